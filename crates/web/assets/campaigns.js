// cxr-triage web: the campaign page. Lists the `score` campaigns in the
// campaign folder with their progress, and one campaign's figures: images
// by priority and by reason, score histograms with the operating points,
// ROC curves when evaluated. Charts are SVG drawn here; a running campaign
// is polled every 3 s (its figures only when its progress moved).
'use strict';

(function () {
  const { el, api, priorityBadge } = window.CXR;
  const SVG = 'http://www.w3.org/2000/svg';
  const PRIORITIES = ['CRITICAL', 'URGENT', 'NOT_ANALYZED', 'ROUTINE'];
  let selected = new URLSearchParams(location.search).get('c');
  let lastStamp = null;

  function svg(tag, attrs, text) {
    const e = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function state(p) {
    if (!p) return t('camp_unknown');
    if (p.finished) return t('camp_finished');
    const idle = Date.now() - (p.updated_ms || 0);
    if (idle > 60000) return t('camp_stalled', { min: fmtNumber(Math.floor(idle / 60000), 0) });
    return t('camp_running');
  }

  function progressText(p) {
    if (!p) return '';
    const total = (p.total || 0) + (p.resumed || 0);
    const done = (p.done || 0) + (p.resumed || 0);
    return t('camp_progress', {
      done: fmtNumber(done, 0),
      total: fmtNumber(total, 0),
      pct: fmtNumber(total ? (100 * done) / total : 100, 0),
      failed: fmtNumber(p.failed || 0, 0),
    });
  }

  async function loadList() {
    const res = await api('/api/campaigns', { headers: { Accept: 'application/json' } });
    if (!res.ok) return [];
    const data = await res.json();
    const body = document.getElementById('campaigns-body');
    body.replaceChildren();
    (data.campaigns || []).forEach((c) => {
      const p = c.progress;
      const link = el('a', { href: '?c=' + encodeURIComponent(c.name), text: c.name });
      link.addEventListener('click', (ev) => {
        ev.preventDefault();
        selected = c.name;
        lastStamp = null;
        history.replaceState(null, '', '?c=' + encodeURIComponent(c.name));
        loadCampaign();
      });
      const done = p ? (p.done || 0) + (p.resumed || 0) : null;
      body.appendChild(el('tr', { 'aria-current': c.name === selected ? 'true' : null }, [
        el('td', {}, [link]),
        el('td', { text: state(p) }),
        el('td', { class: 'num', text: done === null ? '—' : fmtNumber(done, 0) }),
        el('td', { text: p ? fmtDate(p.updated_ms) : '—' }),
      ]));
    });
    document.getElementById('campaigns-empty').hidden = (data.campaigns || []).length > 0;
    if (!selected && data.campaigns && data.campaigns.length) selected = data.campaigns[0].name;
    return data.campaigns || [];
  }

  function countsTable(tbody, counts, keys, label) {
    tbody.replaceChildren();
    const max = Math.max(1, ...keys.map((k) => counts[k] || 0));
    keys.forEach((k) => {
      const n = counts[k] || 0;
      const bar = el('span', { class: 'bar', 'aria-hidden': 'true' });
      bar.style.width = Math.max(n > 0 ? 1 : 0, Math.round((240 * n) / max)) + 'px';
      tbody.appendChild(el('tr', {}, [
        el('th', { scope: 'row' }, [label(k)]),
        el('td', { class: 'num', text: fmtNumber(n, 0) }),
        el('td', {}, [bar]),
      ]));
    });
  }

  function histogram(name, f) {
    const W = 600, H = 180, L = 44, B = 28, T = 10;
    const bins = f.bins || [];
    const max = Math.max(1, ...bins);
    const label = t('camp_histogram_label', { finding: name, n: fmtNumber(f.analysed, 0) });
    const s = svg('svg', { viewBox: `0 0 ${W + L + 10} ${H + B + T}`, role: 'img', 'aria-label': label, class: 'chart' });
    bins.forEach((n, i) => {
      const h = (H * n) / max;
      const r = svg('rect', {
        x: (L + (i * W) / bins.length + 1).toFixed(1), y: (T + H - h).toFixed(1),
        width: (W / bins.length - 2).toFixed(1), height: h.toFixed(1), class: 'hist-bar',
      });
      r.appendChild(svg('title', {}, t('camp_bin', {
        from: fmtNumber(i / bins.length, 2), to: fmtNumber((i + 1) / bins.length, 2), n: fmtNumber(n, 0),
      })));
      s.appendChild(r);
    });
    s.appendChild(svg('line', { x1: L, y1: T + H, x2: L + W, y2: T + H, class: 'axis' }));
    for (let i = 0; i <= 10; i++) {
      s.appendChild(svg('text', { x: L + (W * i) / 10, y: T + H + 18, 'text-anchor': 'middle' }, fmtNumber(i / 10, 1)));
    }
    s.appendChild(svg('text', { x: 4, y: T + 10 }, fmtNumber(max, 0)));
    Object.entries(f.flags_from || {}).forEach(([op, v], i) => {
      const x = L + W * Math.min(1, Math.max(0, v));
      s.appendChild(svg('line', { x1: x, y1: T, x2: x, y2: T + H, class: 'op-line' }));
      s.appendChild(svg('text', { x: x + 3, y: T + 12 + 13 * i, class: 'op-label' }, opName(op)));
    });
    return s;
  }

  function roc(name, fe) {
    const S = 240, L = 36, T = 10;
    const auc = fmtNumber(fe.auc, 3);
    const s = svg('svg', { viewBox: `0 0 ${S + L + 10} ${S + T + 34}`, role: 'img', 'aria-label': t('camp_roc_label', { finding: name, auc }), class: 'chart chart-roc' });
    s.appendChild(svg('rect', { x: L, y: T, width: S, height: S, class: 'frame' }));
    s.appendChild(svg('line', { x1: L, y1: T + S, x2: L + S, y2: T, class: 'chance' }));
    const pts = (fe.roc || []).map((p) => `${(L + S * p[0]).toFixed(1)},${(T + S * (1 - p[1])).toFixed(1)}`);
    s.appendChild(svg('polyline', { points: pts.join(' '), class: 'roc-line' }));
    s.appendChild(svg('text', { x: L, y: T + S + 24 }, t('camp_fpr')));
    s.appendChild(svg('text', { x: 2, y: T + 8 }, t('camp_tpr')));
    return s;
  }

  function pct(x) {
    return x === null || x === undefined || !isFinite(x) ? '—' : fmtNumber(100 * x, 1) + ' %';
  }

  function evaluationBlock(name, fe) {
    const box = el('div', { class: 'evaluation' });
    box.appendChild(el('h4', { text: t('camp_roc') }));
    box.appendChild(el('p', {
      text: t('camp_auc', {
        auc: fmtNumber(fe.auc, 3), lo: fmtNumber((fe.auc_ci95 || [])[0], 3), hi: fmtNumber((fe.auc_ci95 || [])[1], 3),
        n: fmtNumber(fe.images, 0), pos: fmtNumber(fe.positives, 0),
      }),
    }));
    box.appendChild(roc(name, fe));
    const head = el('tr', {}, ['camp_op', 'camp_sens', 'camp_spec', 'camp_ppv', 'camp_npv', 'camp_flagged']
      .map((k, i) => el('th', { scope: 'col', class: i ? 'num' : null, text: t(k) })));
    const rows = Object.entries(fe.operating_points || {}).map(([op, c]) => el('tr', {}, [
      el('th', { scope: 'row', text: opName(op) }),
      ...['sensitivity', 'specificity', 'ppv', 'npv', 'flagged'].map((k) => el('td', { class: 'num', text: pct(c[k]) })),
    ]));
    box.appendChild(el('table', { class: 'counts' }, [el('thead', {}, [head]), el('tbody', {}, rows)]));
    return box;
  }

  async function loadCampaign() {
    if (!selected) return;
    const res = await api('/api/campaigns/' + encodeURIComponent(selected), { headers: { Accept: 'application/json' } });
    const section = document.getElementById('campaign');
    section.hidden = false;
    document.getElementById('campaign-name').textContent = selected;
    const findings = document.getElementById('campaign-findings');
    if (!res.ok) {
      findings.replaceChildren(el('p', { class: 'message message-error', text: t('camp_unreadable') }));
      return;
    }
    const c = await res.json();
    const p = c.progress;
    const bar = document.getElementById('campaign-progress');
    const total = p ? (p.total || 0) + (p.resumed || 0) : c.figures.images;
    const done = p ? (p.done || 0) + (p.resumed || 0) : c.figures.images;
    bar.max = Math.max(1, total);
    bar.value = done;
    document.getElementById('campaign-progress-text').textContent =
      (p ? state(p) + ' — ' + progressText(p) : t('camp_images', { n: fmtNumber(c.figures.images, 0) }));
    countsTable(document.getElementById('campaign-priorities'), c.figures.by_priority, PRIORITIES,
      (k) => priorityBadge(k));
    const reasons = Object.keys(c.figures.by_reason || {});
    document.getElementById('campaign-reasons-box').hidden = reasons.length === 0;
    countsTable(document.getElementById('campaign-reasons'), c.figures.by_reason, reasons,
      (k) => document.createTextNode(hasKey('reason_' + k) ? t('reason_' + k) : k));
    findings.replaceChildren();
    Object.entries(c.figures.findings || {}).forEach(([id, f]) => {
      const name = findingName(id);
      const block = el('section', { class: 'finding-figures' }, [
        el('h3', { text: t('camp_histogram', { finding: name }) }),
        histogram(name, f),
        el('p', { class: 'note', text: t('camp_histogram_note', { n: fmtNumber(f.analysed, 0) }) }),
      ]);
      const fe = c.evaluation && c.evaluation.findings && c.evaluation.findings[id];
      block.appendChild(fe ? evaluationBlock(name, fe) : el('p', { class: 'note', text: t('camp_no_truth') }));
      findings.appendChild(block);
    });
    lastStamp = p ? p.updated_ms : 'static';
  }

  async function tick() {
    try {
      const list = await loadList();
      const cur = list.find((c) => c.name === selected);
      const stamp = cur && cur.progress ? cur.progress.updated_ms : 'static';
      if (selected && stamp !== lastStamp) await loadCampaign();
    } catch (e) {
      console.error(e);
    }
    setTimeout(tick, 3000);
  }

  tick();
})();
