// cxr-triage web: the audit trail (admin role), a page at a time, newest
// page first, with whether each page's hash chain holds.
'use strict';

(function () {
  const { el, api } = window.CXR;
  const LIMIT = 100;
  let first = 0;
  let last = 0;

  async function load(query) {
    const res = await api('/api/audit?limit=' + LIMIT + '&' + query, { headers: { Accept: 'application/json' } });
    if (!res.ok) return;
    const data = await res.json();
    const records = data.records || [];
    last = data.last_sequence || 0;
    first = records.length ? records[0].sequence : 0;
    const body = document.getElementById('audit-body');
    body.replaceChildren(...records.map((r) => el('tr', { class: r.outcome === 'OK' ? null : 'audit-refused' }, [
      el('td', { class: 'num', text: String(r.sequence) }),
      el('td', { class: 'audit-when', text: fmtDate(r.at_ms) }),
      el('td', { text: r.who }),
      el('td', { text: r.roles }),
      el('td', { text: r.method }),
      el('td', { text: r.action }),
      el('td', { class: 'audit-object', text: r.object }),
      el('td', { text: r.address }),
      el('td', { text: r.outcome }),
    ])));
    const chain = document.getElementById('audit-chain');
    chain.textContent = t(data.chain_intact ? 'audit_chain_ok' : 'audit_chain_broken');
    chain.className = 'chain ' + (data.chain_intact ? 'chain-ok' : 'chain-broken');
    if (records.length) {
      chain.textContent += ' · ' + t('audit_range', {
        from: records[0].sequence, to: records[records.length - 1].sequence, last,
      });
    }
    document.getElementById('audit-prev').disabled = first <= 1;
    document.getElementById('audit-first').disabled = first <= 1;
    const end = records.length ? records[records.length - 1].sequence : 0;
    document.getElementById('audit-next').disabled = end >= last;
    document.getElementById('audit-latest').disabled = end >= last;
  }

  document.getElementById('audit-first').addEventListener('click', () => load('after=0'));
  document.getElementById('audit-latest').addEventListener('click', () => load('latest=1'));
  document.getElementById('audit-prev').addEventListener('click', () =>
    load('after=' + Math.max(0, first - 1 - LIMIT)));
  document.getElementById('audit-next').addEventListener('click', () =>
    load('after=' + (first - 1 + LIMIT)));
  load('latest=1');
})();
