// cxr-triage web: the reading worklist page. Needs i18n.js first.
'use strict';

(function () {
  const { el, prioClass, priorityBadge, statusLabel, api, postStatus } = window.CXR;

  const MAX_PAGES = 20;
  const form = document.getElementById('filters');
  const tbody = document.getElementById('worklist-body');
  const emptyMsg = document.getElementById('worklist-empty');
  const loadingMsg = document.getElementById('worklist-loading');
  const countEl = document.getElementById('worklist-count');
  const messageEl = document.getElementById('worklist-message');
  const alertBox = document.getElementById('critical-alert');
  const alertText = document.getElementById('critical-alert-text');

  let studies = [];            // as last rendered, server order
  let known = null;            // uid → priority of the previous list (null before the first load)
  let selectedUid = null;
  let fetchSeq = 0;            // discards answers to superseded requests

  // ---- Query -------------------------------------------------------------

  /** The query string for the filters' current state. */
  function queryString() {
    const p = new URLSearchParams();
    const checked = (name) =>
      Array.from(form.querySelectorAll('input[name="' + name + '"]:checked')).map((i) => i.value);
    const prio = checked('priority');
    const status = checked('status');
    // Nothing ticked in a group means "no filter" on it.
    if (prio.length) p.set('priority', prio.join(','));
    if (status.length) p.set('status', status.join(','));
    const modality = form.elements.modality.value.trim().toUpperCase();
    if (modality) p.set('modality', modality);
    if (form.elements.from.value) p.set('from', form.elements.from.value);
    if (form.elements.to.value) p.set('to', form.elements.to.value);
    return p.toString().replace(/%2C/g, ',');
  }

  /** Fetch every page of the worklist (up to MAX_PAGES) and render it. */
  async function load() {
    const seq = ++fetchSeq;
    const base = '/api/worklist?' + queryString();
    const all = [];
    let token = '';
    try {
      for (let page = 0; page < MAX_PAGES; page++) {
        const url = token ? base + '&page_token=' + encodeURIComponent(token) : base;
        const res = await api(url, { headers: { Accept: 'application/json' } });
        if (!res.ok) throw new Error(t('worklist_error', { status: res.status }));
        const body = await res.json();
        if (seq !== fetchSeq) return;
        all.push(...(body.studies || []));
        token = body.next_page_token || '';
        if (!token) break;
      }
    } catch (e) {
      if (seq !== fetchSeq) return;
      loadingMsg.hidden = true;
      showMessage(e && e.message && !(e instanceof TypeError) ? e.message : t('network_error'), true);
      return;
    }
    if (seq !== fetchSeq) return;
    render(all);
  }

  // ---- Rendering -----------------------------------------------------------

  function render(list) {
    // New (or newly) CRITICAL studies since the previous list.
    const fresh = known === null ? [] : list.filter((s) =>
      s.assessment && s.assessment.priority === 'CRITICAL' && known.get(s.study_instance_uid) !== 'CRITICAL');

    studies = list;
    known = new Map(list.map((s) => [s.study_instance_uid, s.assessment && s.assessment.priority]));
    if (selectedUid && !known.has(selectedUid)) selectedUid = null;

    const frag = document.createDocumentFragment();
    list.forEach((s) => frag.appendChild(row(s)));
    tbody.replaceChildren(frag);

    loadingMsg.hidden = true;
    emptyMsg.hidden = list.length > 0;
    countEl.textContent = t('worklist_count', { n: fmtNumber(list.length, 0) });
    markSelected(false);

    if (fresh.length) announceCritical(fresh);
  }

  /** One table row; all server text goes in with textContent. */
  function row(s) {
    const a = s.assessment || {};
    const priority = a.priority || 'ROUTINE';
    const href = '/study/' + encodeURIComponent(s.study_instance_uid);
    const tr = el('tr', {
      'data-uid': s.study_instance_uid,
      'data-priority': priority,
      'data-status': s.status || '',
      'data-href': href,
      class: 'prio-' + prioClass(priority),
    });

    let finding;
    if (s.top_finding) {
      finding = el('td', { class: 'finding' }, [
        el('span', { text: findingName(s.top_finding.finding, s.top_finding.display_name) }),
        el('span', { class: 'score', text: fmtNumber(s.top_finding.score, 2) }),
      ]);
    } else {
      finding = el('td', { class: 'finding' }, [el('span', { class: 'muted', text: t('no_finding') })]);
    }

    tr.append(
      el('td', null, [priorityBadge(priority)]),
      finding,
      el('td', null, [el('a', {
        class: 'study-link', href,
        text: s.accession_number || t('no_accession'),
      })]),
      el('td', { text: (s.modalities || []).join(', ') || '—' }),
      el('td', { text: fmtStudyDate(s.study_date) }),
      el('td', {
        class: 'age', 'data-received': s.first_received_ms,
        title: fmtDate(s.first_received_ms),
        text: fmtAge(Date.now() - s.first_received_ms),
      }),
      el('td', null, [el('span', {
        class: 'status-badge', 'data-status': s.status || '', text: statusLabel(s.status),
      })]),
      el('td', { text: s.status_by || '—' }),
      el('td', { class: 'num', text: fmtNumber(s.image_count || 0, 0) }),
    );
    return tr;
  }

  /** Refresh the "waiting" column. */
  function refreshAges() {
    const now = Date.now();
    tbody.querySelectorAll('td.age[data-received]').forEach((td) => {
      td.textContent = fmtAge(now - Number(td.getAttribute('data-received')));
    });
  }

  function showMessage(text, isError) {
    messageEl.textContent = text || '';
    messageEl.className = 'message' + (text ? (isError ? ' message-error' : ' message-ok') : '');
  }

  // ---- New CRITICAL studies -------------------------------------------------

  function announceCritical(fresh) {
    fresh.forEach((s) => {
      const tr = tbody.querySelector('tr[data-uid="' + CSS.escape(s.study_instance_uid) + '"]');
      if (tr) {
        tr.classList.remove('flash');
        void tr.offsetWidth; // restart the animation
        tr.classList.add('flash');
      }
    });
    const accessions = fresh.map((s) => s.accession_number || t('no_accession')).join(', ');
    alertText.textContent = t('critical_alert', { accession: accessions });
    alertBox.hidden = false;
    beep();
  }

  document.getElementById('critical-alert-close').addEventListener('click', () => {
    alertBox.hidden = true;
  });

  // Web Audio: browsers allow sound only after a user gesture, so the
  // context is created (or resumed) on the first interaction.
  let audio = null;
  function unlockAudio() {
    try {
      const Ctx = window.AudioContext || window.webkitAudioContext;
      if (!Ctx) return;
      if (!audio) audio = new Ctx();
      if (audio.state === 'suspended') audio.resume().catch(() => {});
    } catch (e) { /* no sound, no matter */ }
  }
  ['pointerdown', 'keydown'].forEach((ev) =>
    document.addEventListener(ev, unlockAudio, { once: true, capture: true }));

  function beep() {
    try {
      if (!audio) return;
      const now = audio.currentTime;
      [0, 0.25].forEach((offset) => {
        const osc = audio.createOscillator();
        const gain = audio.createGain();
        osc.type = 'sine';
        osc.frequency.value = 880;
        gain.gain.setValueAtTime(0.0001, now + offset);
        gain.gain.exponentialRampToValueAtTime(0.25, now + offset + 0.02);
        gain.gain.exponentialRampToValueAtTime(0.0001, now + offset + 0.18);
        osc.connect(gain).connect(audio.destination);
        osc.start(now + offset);
        osc.stop(now + offset + 0.2);
      });
    } catch (e) { /* ignore */ }
  }

  // ---- Selection and keyboard ---------------------------------------------

  function rows() { return Array.from(tbody.querySelectorAll('tr[data-uid]')); }

  function markSelected(scroll) {
    rows().forEach((tr) => {
      const on = tr.getAttribute('data-uid') === selectedUid;
      tr.classList.toggle('selected', on);
      tr.setAttribute('aria-selected', on ? 'true' : 'false');
      if (on && scroll) tr.scrollIntoView({ block: 'nearest' });
    });
  }

  function move(delta) {
    const list = rows();
    if (!list.length) return;
    let i = list.findIndex((tr) => tr.getAttribute('data-uid') === selectedUid);
    i = i < 0 ? (delta > 0 ? 0 : list.length - 1) : Math.min(list.length - 1, Math.max(0, i + delta));
    selectedUid = list[i].getAttribute('data-uid');
    markSelected(true);
  }

  function selectedRow() {
    return rows().find((tr) => tr.getAttribute('data-uid') === selectedUid) || null;
  }

  async function claimSelected() {
    const tr = selectedRow();
    if (!tr) return;
    const uid = tr.getAttribute('data-uid');
    const s = studies.find((x) => x.study_instance_uid === uid);
    try {
      const res = await postStatus(uid, 'CLAIMED');
      if (res.status === 403) showMessage(t('forbidden'), true);
      else if (!res.ok) showMessage(t('action_failed', { status: res.status }), true);
      else showMessage(t('claimed_ok', { accession: (s && s.accession_number) || t('no_accession') }), false);
    } catch (e) {
      showMessage(t('network_error'), true);
    }
    load();
  }

  function typing(target) {
    if (!target || !target.closest) return false;
    return !!target.closest('input, select, textarea, [contenteditable=""], [contenteditable="true"]');
  }

  document.addEventListener('keydown', (e) => {
    if (e.ctrlKey || e.metaKey || e.altKey || typing(e.target)) return;
    switch (e.key) {
      case 'j': move(1); e.preventDefault(); break;
      case 'k': move(-1); e.preventDefault(); break;
      case 'Enter': {
        // Links and buttons handle their own Enter.
        if (e.target.closest && e.target.closest('a, button')) return;
        const tr = selectedRow();
        if (tr) { e.preventDefault(); location.href = tr.getAttribute('data-href'); }
        break;
      }
      case 'c': if (selectedRow()) { e.preventDefault(); claimSelected(); } break;
      default: break;
    }
  });

  // Click anywhere on a row opens the study.
  tbody.addEventListener('click', (e) => {
    const tr = e.target.closest('tr[data-uid]');
    if (!tr || e.target.closest('a')) return;
    selectedUid = tr.getAttribute('data-uid');
    markSelected(false);
    location.href = tr.getAttribute('data-href');
  });

  // ---- Filters -------------------------------------------------------------

  let inputTimer = 0;
  form.addEventListener('submit', (e) => { e.preventDefault(); load(); });
  form.addEventListener('change', () => load());
  form.elements.modality.addEventListener('input', () => {
    clearTimeout(inputTimer);
    inputTimer = setTimeout(load, 400);
  });
  // After a reset the defaults are back once the event has run.
  form.addEventListener('reset', () => setTimeout(load, 0));

  // ---- Live updates ----------------------------------------------------------

  const live = document.getElementById('live');
  const liveText = document.getElementById('live-text');
  function setLive(state) {
    live.className = 'live live-' + state;
    liveText.setAttribute('data-i18n', 'live_' + state);
    liveText.textContent = t('live_' + state);
  }

  let reloadTimer = 0;
  function scheduleReload() {
    clearTimeout(reloadTimer);
    reloadTimer = setTimeout(load, 150);
  }

  let wasDown = false;
  function connect() {
    let es;
    try {
      es = new EventSource('/api/events');
    } catch (e) {
      setLive('reconnecting');
      setTimeout(connect, 5000);
      return;
    }
    es.onopen = () => {
      setLive('connected');
      // Anything missed while down comes back with Last-Event-ID, but a
      // fresh list costs little.
      if (wasDown) scheduleReload();
      wasDown = false;
    };
    es.addEventListener('change', () => scheduleReload());
    es.onerror = () => {
      wasDown = true;
      setLive('reconnecting');
      if (es.readyState === EventSource.CLOSED) {
        // The browser gave up (e.g. an HTTP error): check the session and retry.
        es.close();
        api('/api/me').catch(() => {}).then(() => setTimeout(connect, 5000));
      }
    };
  }

  // ---- Start -----------------------------------------------------------------

  load();
  connect();
  setInterval(refreshAges, 30000);
})();
