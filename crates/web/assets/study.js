// cxr-triage web: the study page (/study/<uid>). Needs i18n.js first.
'use strict';

(function () {
  const { el, priorityBadge, statusLabel, api, postStatus } = window.CXR;
  const SVG = 'http://www.w3.org/2000/svg';

  const uid = decodeURIComponent(location.pathname.replace(/^\/study\//, '').replace(/\/+$/, ''));
  const $ = (id) => document.getElementById(id);

  // Window/level presets as CSS filters on the preview.
  const PRESETS = [
    ['default', 'wl_default', ''],
    ['lung', 'wl_lung', 'brightness(1.15) contrast(1.6)'],
    ['bone', 'wl_bone', 'brightness(0.85) contrast(1.9)'],
    ['soft', 'wl_soft', 'brightness(1.05) contrast(1.25)'],
  ];
  const ZOOM_STEP = 1.25, ZOOM_MIN = 1, ZOOM_MAX = 8;

  let renderedSops = '';   // the images on screen, to re-render only on change

  // ---- Loading ---------------------------------------------------------------

  async function load() {
    let res;
    try {
      res = await api('/api/studies/' + encodeURIComponent(uid), { headers: { Accept: 'application/json' } });
    } catch (e) {
      return showError(t('network_error'));
    }
    if (res.status === 404) return showError(t('study_not_found'));
    if (!res.ok) return showError(t('study_error', { status: res.status }));
    const body = await res.json();
    $('study-loading').hidden = true;
    $('study-error').hidden = true;
    renderSummary(body.study || {});
    renderViewer(body.viewer_url);
    const images = body.images || [];
    const sops = images.map((i) => i.sop_instance_uid).join('|');
    if (sops !== renderedSops) {
      renderedSops = sops;
      renderImages(images);
    }
  }

  function showError(text) {
    $('study-loading').hidden = true;
    const e = $('study-error');
    e.textContent = text;
    e.hidden = false;
  }

  // ---- Summary and status -------------------------------------------------------

  function renderSummary(s) {
    const a = s.assessment || {};
    $('study-summary').hidden = false;
    $('study-accession').textContent = s.accession_number || '';
    $('study-accession-value').textContent = s.accession_number || '—';
    $('study-priority').replaceChildren(priorityBadge(a.priority || 'ROUTINE'));
    $('study-date').textContent = fmtStudyDate(s.study_date);
    $('study-modality').textContent = (s.modalities || []).join(', ') || '—';
    $('study-received').textContent = fmtDate(s.first_received_ms);
    $('study-images-count').textContent = fmtNumber(s.image_count || 0, 0);
    renderStatus(s);

    // Reasons for the priority (PriorityReason: finding, score, operating_point, threshold, text).
    const reasons = a.reasons || [];
    $('study-reasons-box').hidden = reasons.length === 0;
    $('study-reasons').replaceChildren(...reasons.map((r) => {
      if (typeof r === 'string') return el('li', { text: r });
      if (r.finding) {
        return el('li', {
          text: t('reason_entry', {
            finding: findingName(r.finding, r.finding),
            score: fmtNumber(r.score, 2),
            threshold: fmtNumber(r.threshold, 3),
            op: opName(r.operating_point),
          }),
        });
      }
      return el('li', { text: r.text || '' });
    }));
  }

  function renderStatus(s) {
    const box = $('study-status');
    box.setAttribute('data-status', s.status || '');
    box.className = 'status-badge';
    const parts = [el('span', { class: 'status-label', text: statusLabel(s.status) })];
    if (s.status_by) parts.push(' ', el('span', { class: 'status-by', text: t('status_by', { user: s.status_by }) }));
    box.replaceChildren(...parts);
    document.title = t('study_title') + ' ' + (s.accession_number || '');
  }

  function renderViewer(url) {
    const a = $('open-viewer');
    // Only http(s) links, never javascript: or the like.
    if (url && /^https?:\/\//i.test(url)) {
      a.href = url;
      a.hidden = false;
    } else {
      a.hidden = true;
      a.removeAttribute('href');
    }
  }

  // ---- Status buttons ------------------------------------------------------------

  function message(text, isError) {
    const m = $('action-message');
    m.textContent = text || '';
    m.className = 'message' + (text ? (isError ? ' message-error' : ' message-ok') : '');
  }

  async function setStatus(status, button) {
    button.disabled = true;
    message('');
    try {
      const res = await postStatus(uid, status);
      if (res.status === 403) message(t('forbidden'), true);
      else if (!res.ok) message(t('action_failed', { status: res.status }), true);
      else {
        // The answer is the study's summary.
        const s = await res.json().catch(() => null);
        if (s && s.status) renderStatus(s);
        message(t('status_updated'), false);
      }
    } catch (e) {
      message(t('network_error'), true);
    } finally {
      button.disabled = false;
    }
  }

  [['claim', 'CLAIMED'], ['mark-read', 'READ'], ['dismiss', 'DISMISSED']].forEach(([id, status]) => {
    const b = $(id);
    b.addEventListener('click', () => setStatus(status, b));
  });

  // ---- Images ----------------------------------------------------------------------

  function renderImages(images) {
    $('images-section').hidden = images.length === 0;
    $('images').replaceChildren(...images.map((img, i) => imageCard(img, i + 1)));
  }

  function reasonText(reason) {
    if (!reason) return '';
    const key = 'reason_' + reason.code;
    return reason.code && hasKey(key) ? t(key) : (reason.message || reason.code || '');
  }

  function imageCard(img, n) {
    const card = el('article', { class: 'image-card', 'data-sop': img.sop_instance_uid });
    const a = img.assessment || {};
    card.appendChild(el('h3', null, [
      el('span', { text: t('image_heading', { n: fmtNumber(n, 0), view: img.view_position || t('view_unknown') }) }),
      priorityBadge(a.priority || (img.analyzable === false ? 'NOT_ANALYZED' : 'ROUTINE')),
    ]));

    if (img.analyzable === false) {
      card.appendChild(el('div', { class: 'not-analyzed-box' }, [
        el('strong', { text: t('not_analyzed_title') }), el('br'),
        el('span', { class: 'reason', 'data-code': img.reason ? img.reason.code : '', text: reasonText(img.reason) }), el('br'),
        el('span', { text: t('radiologist_must_read') }),
      ]));
    }

    if (img.has_preview) card.appendChild(viewer(img, n));
    else card.appendChild(el('p', { class: 'empty', text: t('no_preview') }));

    card.appendChild(findingsTable(img));
    card.appendChild(provenance(img));
    return card;
  }

  /** Preview + heatmap canvas + region boxes, with the tools above them. */
  function viewer(img, n) {
    const sop = img.sop_instance_uid;
    const wrap = el('div', { class: 'viewer' });
    const toolbar = el('div', { class: 'toolbar' });
    const viewport = el('div', { class: 'viewport' });
    const stage = el('div', { class: 'stage' });
    const preview = el('img', {
      class: 'preview', alt: t('preview_alt', { n: fmtNumber(n, 0) }),
      src: '/api/images/' + encodeURIComponent(sop) + '/preview',
    });
    const canvas = el('canvas', { class: 'heatmap' });
    stage.append(preview, canvas);
    viewport.appendChild(stage);

    // Window/level presets.
    const wl = el('div', { class: 'group', role: 'group', 'aria-label': t('wl_label') },
      [el('span', { class: 'group-label', text: t('wl_label') })]);
    const wlButtons = PRESETS.map(([name, key, filter]) => {
      const b = el('button', { type: 'button', class: 'tool-btn', 'data-preset': name, 'aria-pressed': name === 'default' ? 'true' : 'false', text: t(key) });
      b.addEventListener('click', () => {
        preview.style.filter = filter;
        wlButtons.forEach((o) => o.setAttribute('aria-pressed', o === b ? 'true' : 'false'));
      });
      return b;
    });
    wl.append(...wlButtons);

    // Zoom (CSS transform on the stage).
    let zoom = 1;
    const applyZoom = () => { stage.style.transform = zoom === 1 ? '' : 'scale(' + zoom + ')'; };
    const zoomBtn = (text, label, fn) => {
      const b = el('button', { type: 'button', class: 'tool-btn', 'aria-label': label, title: label, text });
      b.addEventListener('click', () => { fn(); applyZoom(); });
      return b;
    };
    const zg = el('div', { class: 'group', role: 'group', 'aria-label': t('zoom_label') }, [
      el('span', { class: 'group-label', text: t('zoom_label') }),
      zoomBtn('+', t('zoom_in'), () => { zoom = Math.min(ZOOM_MAX, zoom * ZOOM_STEP); }),
      zoomBtn('−', t('zoom_out'), () => { zoom = Math.max(ZOOM_MIN, zoom / ZOOM_STEP); }),
      zoomBtn('1:1', t('zoom_reset'), () => { zoom = 1; }),
    ]);
    toolbar.append(wl, zg);

    // Heatmap controls.
    const heatmaps = img.heatmaps || [];
    const findings = img.findings || [];
    const byId = new Map(findings.map((f) => [f.finding, f]));
    const toggle = el('input', { type: 'checkbox', class: 'heatmap-toggle' });
    const opacity = el('input', { type: 'range', class: 'heatmap-opacity', min: '0', max: '100', value: '45' });
    const select = el('select', { class: 'heatmap-select' });
    // Default: the highest-scoring finding that has a heatmap.
    const ordered = heatmaps.slice().sort((x, y) =>
      ((byId.get(y) || {}).score || 0) - ((byId.get(x) || {}).score || 0));
    ordered.forEach((id) => {
      const f = byId.get(id);
      select.appendChild(el('option', { value: id, text: findingName(id, f && f.display_name) }));
    });
    const hmNote = el('span', { class: 'heatmap-note', role: 'status' });
    if (heatmaps.length) {
      toggle.checked = true;
      toolbar.appendChild(el('div', { class: 'group' }, [
        el('label', null, [toggle, el('span', { text: t('heatmap_show') })]),
        el('label', null, [el('span', { text: t('heatmap_finding') }), select]),
        el('label', null, [el('span', { text: t('heatmap_opacity') }), opacity]),
        hmNote,
      ]));
    } else {
      toggle.checked = false;
      toggle.disabled = true;
      toolbar.appendChild(el('div', { class: 'group' }, [
        el('label', null, [toggle, el('span', { text: t('heatmap_show') })]),
        el('span', { class: 'heatmap-note', text: t('heatmap_none') }),
      ]));
    }

    // Region boxes (SVG in image pixel coordinates).
    const svg = regionsSvg(img, findings);
    const regionToggle = el('input', { type: 'checkbox', class: 'region-toggle', checked: true });
    if (svg) {
      stage.appendChild(svg);
      regionToggle.addEventListener('change', () => { svg.style.display = regionToggle.checked ? '' : 'none'; });
      toolbar.appendChild(el('label', null, [regionToggle, el('span', { text: t('regions_show') })]));
    }

    // Heatmap state and drawing.
    const cache = new Map();   // finding → grid, or null when it failed
    let grid = null;

    function setVisible(on) {
      canvas.hidden = !on;
      canvas.style.display = on ? '' : 'none';
    }
    function draw() {
      if (!grid || !preview.naturalWidth) return;
      drawHeatmap(canvas, grid, preview);
    }
    async function choose(id) {
      if (!id) return;
      if (!cache.has(id)) {
        try {
          const res = await api('/api/images/' + encodeURIComponent(sop) + '/heatmap/' + encodeURIComponent(id),
            { headers: { Accept: 'application/json' } });
          cache.set(id, res.ok ? await res.json() : null);
        } catch (e) {
          cache.set(id, null);
        }
      }
      if (select.value !== id) return; // the user moved on
      grid = cache.get(id);
      hmNote.textContent = grid ? '' : t('heatmap_error');
      if (grid) draw();
      else canvas.getContext('2d').clearRect(0, 0, canvas.width, canvas.height);
    }

    canvas.style.opacity = String(Number(opacity.value) / 100);
    setVisible(toggle.checked);
    toggle.addEventListener('change', () => setVisible(toggle.checked));
    opacity.addEventListener('input', () => { canvas.style.opacity = String(Number(opacity.value) / 100); });
    select.addEventListener('change', () => choose(select.value));
    preview.addEventListener('load', () => {
      // Without width/height from the API, the PNG's own size stands in.
      if (svg && !img.width) svg.setAttribute('viewBox', '0 0 ' + preview.naturalWidth + ' ' + preview.naturalHeight);
      draw();
    });
    if (window.ResizeObserver) new ResizeObserver(draw).observe(preview);
    if (heatmaps.length) choose(select.value);

    wrap.append(toolbar, viewport);
    return wrap;
  }

  /** Draw a heatmap grid over the canvas, at the displayed size. */
  function drawHeatmap(canvas, grid, preview) {
    const gw = grid.grid_width | 0, gh = grid.grid_height | 0;
    const values = grid.values || [];
    if (!gw || !gh || values.length < gw * gh) return;
    const dpr = window.devicePixelRatio || 1;
    const w = Math.max(1, Math.round(preview.clientWidth * dpr));
    const h = Math.max(1, Math.round(preview.clientHeight * dpr));
    if (canvas.width !== w) canvas.width = w;
    if (canvas.height !== h) canvas.height = h;

    // Colour the grid at its own size, then let the canvas scale it smoothly.
    const small = document.createElement('canvas');
    small.width = gw;
    small.height = gh;
    const sctx = small.getContext('2d');
    const data = sctx.createImageData(gw, gh);
    for (let i = 0; i < gw * gh; i++) {
      const [r, g, b, a] = colour(values[i]);
      data.data[i * 4] = r;
      data.data[i * 4 + 1] = g;
      data.data[i * 4 + 2] = b;
      data.data[i * 4 + 3] = a;
    }
    sctx.putImageData(data, 0, 0);
    const ctx = canvas.getContext('2d');
    ctx.clearRect(0, 0, w, h);
    ctx.imageSmoothingEnabled = true;
    ctx.imageSmoothingQuality = 'high';
    ctx.drawImage(small, 0, 0, w, h);
  }

  /** 0 → transparent; low → yellow; 1 → red (monotone in lightness). */
  function colour(v) {
    const x = Math.min(1, Math.max(0, Number(v) || 0));
    if (x < 0.02) return [0, 0, 0, 0];
    const r = 255;
    const g = Math.round(235 * (1 - x));
    const b = Math.round(60 * (1 - x) * (1 - x));
    const a = Math.round(255 * Math.min(1, 0.25 + 0.9 * x));
    return [r, g, b, a];
  }

  /** Region boxes for every finding that has them, each labelled with its score. */
  function regionsSvg(img, findings) {
    const boxes = [];
    findings.forEach((f) => (f.regions || []).forEach((r) => boxes.push([f, r])));
    if (!boxes.length) return null;
    const W = img.width || 1000, H = img.height || 1000;
    const svg = document.createElementNS(SVG, 'svg');
    svg.setAttribute('class', 'regions');
    svg.setAttribute('viewBox', '0 0 ' + W + ' ' + H);
    svg.setAttribute('preserveAspectRatio', 'none');
    svg.setAttribute('aria-hidden', 'true');
    const fontSize = Math.max(W, H) / 45;
    boxes.forEach(([f, r]) => {
      const g = document.createElementNS(SVG, 'g');
      const rect = document.createElementNS(SVG, 'rect');
      rect.setAttribute('x', r.x);
      rect.setAttribute('y', r.y);
      rect.setAttribute('width', r.width);
      rect.setAttribute('height', r.height);
      const label = findingName(f.finding, f.display_name) + ' ' + fmtNumber(r.score, 2);
      const text = document.createElementNS(SVG, 'text');
      const ty = r.y > fontSize * 1.3 ? r.y - fontSize * 0.3 : r.y + fontSize;
      text.setAttribute('x', r.x + fontSize * 0.2);
      text.setAttribute('y', ty);
      text.setAttribute('font-size', fontSize);
      text.textContent = label;
      const bg = document.createElementNS(SVG, 'rect');
      bg.setAttribute('class', 'label-bg');
      bg.setAttribute('x', r.x);
      bg.setAttribute('y', ty - fontSize);
      bg.setAttribute('width', label.length * fontSize * 0.6 + fontSize * 0.4);
      bg.setAttribute('height', fontSize * 1.25);
      const title = document.createElementNS(SVG, 'title');
      title.textContent = label;
      g.append(title, rect, bg, text);
      svg.appendChild(g);
    });
    return svg;
  }

  function findingsTable(img) {
    const box = el('div', { class: 'findings-box' }, [el('h4', { class: 'h3', text: t('findings_title') })]);
    const findings = img.findings || [];
    if (!findings.length) {
      box.appendChild(el('p', { class: 'empty', text: t('no_findings') }));
      return box;
    }
    const verdict = (positive) => el('span', {
      class: 'verdict ' + (positive ? 'verdict-positive' : 'verdict-negative'),
      text: t(positive ? 'verdict_positive' : 'verdict_negative'),
    });
    const table = el('table', { class: 'findings' }, [
      el('thead', null, [el('tr', null, [
        el('th', { scope: 'col', text: t('th_finding') }),
        el('th', { scope: 'col', class: 'num', text: t('th_score') }),
        el('th', { scope: 'col', text: t('th_verdict') }),
        el('th', { scope: 'col', text: t('th_operating_points') }),
      ])]),
    ]);
    const tbody = el('tbody');
    findings.slice().sort((x, y) => (y.score || 0) - (x.score || 0)).forEach((f) => {
      const ops = el('ul', null, (f.operating_points || []).map((op) => {
        const inUse = op.name === f.operating_point;
        return el('li', { class: inUse ? 'op-in-use' : null }, [
          t('op_entry', {
            name: opName(op.name),
            threshold: fmtNumber(op.threshold, 3),
            verdict: t(op.positive ? 'verdict_positive' : 'verdict_negative'),
          }),
          inUse ? ' ' + t('op_in_use') : null,
        ]);
      }));
      tbody.appendChild(el('tr', { 'data-finding': f.finding }, [
        el('td', { text: findingName(f.finding, f.display_name) }),
        el('td', { class: 'num', text: fmtNumber(f.score, 2) }),
        el('td', null, [verdict(!!f.positive), ' ', el('span', {
          class: 'op-name',
          text: '(' + opName(f.operating_point) + ', ' + fmtNumber(f.threshold, 3) + ')',
        })]),
        el('td', null, [ops]),
      ]));
    });
    table.appendChild(tbody);
    box.appendChild(el('div', { class: 'table-wrap' }, [table]));
    return box;
  }

  function provenance(img) {
    const list = img.provenance || [];
    if (!list.length) return document.createTextNode('');
    return el('div', { class: 'provenance' }, [
      el('span', { text: t('provenance_title') }),
      el('ul', null, list.map((p) => el('li', {
        text: t('provenance_entry', {
          model: p.model_id || '—', version: p.model_version || '—', provider: p.provider || '—',
        }),
      }))),
    ]);
  }

  // ---- Live updates ------------------------------------------------------------------

  const live = $('live');
  const liveText = $('live-text');
  function setLive(state) {
    live.className = 'live live-' + state;
    liveText.setAttribute('data-i18n', 'live_' + state);
    liveText.textContent = t('live_' + state);
  }

  let reloadTimer = 0;
  function connect() {
    let es;
    try {
      es = new EventSource('/api/events');
    } catch (e) {
      setLive('reconnecting');
      setTimeout(connect, 5000);
      return;
    }
    es.onopen = () => setLive('connected');
    es.addEventListener('change', (ev) => {
      let data;
      try { data = JSON.parse(ev.data); } catch (e) { return; }
      if (!data || data.study_instance_uid !== uid) return;
      clearTimeout(reloadTimer);
      reloadTimer = setTimeout(load, 150);
    });
    es.onerror = () => {
      setLive('reconnecting');
      if (es.readyState === EventSource.CLOSED) {
        es.close();
        api('/api/me').catch(() => {}).then(() => setTimeout(connect, 5000));
      }
    };
  }

  load();
  connect();
})();
