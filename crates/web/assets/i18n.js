// cxr-triage web: dictionaries, formatting, and the parts shared by every
// page (header, sign-in state, API helper, login form). No dependencies.
'use strict';

window.I18N = {
  en: {
    app_name: 'CXR Triage',
    lang_switch: 'Language',
    lang_en: 'English',
    lang_vi: 'Tiếng Việt',
    signed_in_as: 'Signed in as',
    sign_out: 'Sign out',
    ai_banner: 'AI result — not for primary diagnosis',
    skip_to_main: 'Skip to content',

    // Priorities and statuses
    prio_CRITICAL: 'Critical',
    prio_URGENT: 'Urgent',
    prio_NOT_ANALYZED: 'Not analysed',
    prio_ROUTINE: 'Routine',
    status_NEW: 'New',
    status_CLAIMED: 'Claimed',
    status_READING: 'Reading',
    status_READ: 'Read',
    status_DISMISSED: 'Dismissed',
    status_by: 'by {user}',

    // Worklist
    worklist_title: 'Reading worklist',
    filters_title: 'Filters',
    filter_priority: 'Priority',
    filter_status: 'Status',
    filter_modality: 'Modality',
    filter_modality_placeholder: 'e.g. CR',
    filter_from: 'Received from',
    filter_to: 'Received to',
    filter_reset: 'Reset filters',
    col_priority: 'Priority',
    col_finding: 'Top finding',
    col_accession: 'Accession',
    col_modality: 'Modality',
    col_study_date: 'Study date',
    col_age: 'Waiting',
    col_status: 'Status',
    col_held_by: 'Held by',
    col_images: 'Images',
    worklist_loading: 'Loading…',
    worklist_empty: 'No studies match the filters.',
    worklist_count: '{n} studies',
    worklist_error: 'Could not load the worklist ({status}).',
    no_finding: 'No finding',
    no_accession: '(no accession)',
    live_connecting: 'Connecting…',
    live_connected: 'Live',
    live_reconnecting: 'Reconnecting…',
    critical_alert: 'New CRITICAL study: {accession}',
    alert_close: 'Close',
    keyboard_help: 'Keys: j / k move, Enter opens, c claims the selected study.',
    claimed_ok: 'Study {accession} claimed.',

    // Ages
    age_just_now: 'just now',
    age_min: '{n} min',
    age_hours: '{h} h {m} min',
    age_days: '{d} d {h} h',

    // Actions and errors
    claim: 'Claim',
    mark_read: 'Mark as read',
    dismiss: 'Dismiss',
    actions: 'Actions',
    status_updated: 'Status updated.',
    forbidden: 'Your role does not allow this.',
    action_failed: 'The action failed ({status}).',
    network_error: 'Network error — please try again.',

    // Study page
    back_to_worklist: '← Back to worklist',
    study_title: 'Study',
    study_loading: 'Loading study…',
    study_error: 'Could not load the study ({status}).',
    study_not_found: 'Study not found.',
    label_priority: 'Priority',
    label_status: 'Status',
    label_accession: 'Accession',
    label_study_date: 'Study date',
    label_modality: 'Modality',
    label_received: 'First received',
    label_images: 'Images',
    label_reasons: 'Reasons',
    reason_entry: '{finding}: score {score} ≥ threshold {threshold} ({op})',
    open_viewer: 'Open in the hospital viewer',
    images_title: 'Images',
    image_heading: 'Image {n} — view {view}',
    view_unknown: 'unknown',
    preview_alt: 'Chest X-ray preview, image {n}',
    no_preview: 'No preview available for this image.',
    wl_label: 'Window/level',
    wl_default: 'Default',
    wl_lung: 'Lung',
    wl_bone: 'Bone',
    wl_soft: 'Soft tissue',
    zoom_label: 'Zoom',
    zoom_in: 'Zoom in',
    zoom_out: 'Zoom out',
    zoom_reset: 'Reset zoom',
    heatmap_show: 'Show heatmap',
    heatmap_opacity: 'Heatmap opacity',
    heatmap_finding: 'Heatmap of',
    heatmap_none: 'No heatmap for this image.',
    heatmap_error: 'The heatmap could not be loaded.',
    regions_show: 'Show region boxes',
    findings_title: 'Findings',
    th_finding: 'Finding',
    th_score: 'Calibrated score',
    th_verdict: 'Verdict at the operating point in use',
    th_operating_points: 'All operating points',
    verdict_positive: 'Positive',
    verdict_negative: 'Negative',
    op_entry: '{name}: threshold {threshold} → {verdict}',
    op_in_use: '(in use)',
    no_findings: 'No findings were reported for this image.',
    provenance_title: 'Model',
    provenance_entry: '{model} version {version} ({provider})',
    not_analyzed_title: 'Not analysed by the AI',
    radiologist_must_read: 'A radiologist must read this image.',
    reason_lateral_view: 'Lateral view — the AI reads frontal chest views only.',
    reason_not_chest: 'This is not a chest image.',
    reason_decode_failed: 'The image could not be decoded.',
    reason_inference_failed: 'The AI analysis failed.',
    reason_unsupported: 'This kind of image is not supported.',

    // Operating point names
    op_screening: 'screening',
    op_high_specificity: 'high specificity',
    op_specificity: 'specificity',
    op_rule_out: 'rule-out',

    // Findings
    finding_tuberculosis: 'Tuberculosis',
    finding_malignant_nodule: 'Malignant nodule',
    finding_pneumothorax: 'Pneumothorax',
    finding_pleural_effusion: 'Pleural effusion',
    finding_pneumonia: 'Pneumonia',
    finding_cardiomegaly: 'Cardiomegaly',

    // Login
    login_title: 'Sign in',
    login_user: 'User name',
    login_password: 'Password',
    login_submit: 'Sign in',
    login_error: 'Wrong user name or password.',
    login_throttled: 'Too many failed sign-ins. Wait a few minutes and try again.',
    login_oidc_error: 'The sign-in with the hospital account did not complete. Try again.',
    login_oidc: 'Sign in with the hospital account',

    // Navigation
    nav_label: 'Pages',
    nav_worklist: 'Worklist',
    nav_campaigns: 'Campaigns',
    nav_audit: 'Audit trail',

    // Campaigns
    campaigns_title: 'Screening campaigns',
    campaigns_intro: 'Results of cxr-triage score runs in the campaign folder. A running campaign updates by itself.',
    campaigns_empty: 'No campaigns yet. Run cxr-triage score with its results in the campaign folder.',
    camp_col_name: 'Campaign',
    camp_col_state: 'State',
    camp_col_done: 'Done',
    camp_col_updated: 'Last update',
    camp_running: 'Running',
    camp_finished: 'Finished',
    camp_stalled: 'No progress for {min} min',
    camp_unknown: 'No progress file',
    camp_progress: '{done} of {total} images ({pct} %), {failed} failed',
    camp_images: '{n} images',
    camp_by_priority: 'Images by priority',
    camp_not_analysed: 'Not analysed (on the worklist for a human)',
    camp_histogram: '{finding}: score distribution',
    camp_histogram_label: 'Histogram of {finding} scores: {n} analysed images',
    camp_histogram_note: '{n} analysed images; dashed lines: where each operating point starts flagging.',
    camp_bin: '{from}–{to}: {n} images',
    camp_roc: 'ROC curve',
    camp_roc_label: 'ROC curve of {finding}, AUC {auc}',
    camp_auc: 'AUC {auc} (95 % CI {lo}–{hi}), {n} images with truth, {pos} positive.',
    camp_fpr: '1 − specificity',
    camp_tpr: 'Sensitivity',
    camp_op: 'Operating point',
    camp_sens: 'Sensitivity',
    camp_spec: 'Specificity',
    camp_ppv: 'PPV',
    camp_npv: 'NPV',
    camp_flagged: 'Flagged',
    camp_no_truth: 'No evaluation against truth for this campaign (cxr-triage evaluate --json, saved as NAME.evaluation.json).',
    camp_unreadable: 'The campaign’s results cannot be read.',

    // Audit
    audit_title: 'Audit trail',
    audit_intro: 'Every access to patient data and every change, in order; each record carries the hash of the one before.',
    audit_pages: 'Pages of the audit trail',
    audit_first: 'Oldest',
    audit_prev: 'Earlier',
    audit_next: 'Later',
    audit_latest: 'Newest',
    audit_col_seq: 'No.',
    audit_col_when: 'When',
    audit_col_who: 'Who',
    audit_col_roles: 'Roles',
    audit_col_method: 'How',
    audit_col_action: 'Action',
    audit_col_object: 'Object',
    audit_col_address: 'Address',
    audit_col_outcome: 'Outcome',
    audit_chain_ok: 'Hash chain intact on this page',
    audit_chain_broken: 'Hash chain BROKEN on this page',
    audit_range: 'Records {from}–{to} of {last}',
  },

  vi: {
    app_name: 'CXR Triage',
    lang_switch: 'Ngôn ngữ',
    lang_en: 'English',
    lang_vi: 'Tiếng Việt',
    signed_in_as: 'Đã đăng nhập:',
    sign_out: 'Đăng xuất',
    ai_banner: 'Kết quả AI — không dùng để chẩn đoán chính',
    skip_to_main: 'Bỏ qua đến nội dung chính',

    prio_CRITICAL: 'Nguy kịch',
    prio_URGENT: 'Khẩn',
    prio_NOT_ANALYZED: 'Chưa phân tích',
    prio_ROUTINE: 'Thường quy',
    status_NEW: 'Mới',
    status_CLAIMED: 'Đã nhận',
    status_READING: 'Đang đọc',
    status_READ: 'Đã đọc',
    status_DISMISSED: 'Đã bỏ qua',
    status_by: 'bởi {user}',

    worklist_title: 'Danh sách đọc',
    filters_title: 'Bộ lọc',
    filter_priority: 'Mức ưu tiên',
    filter_status: 'Trạng thái',
    filter_modality: 'Phương thức chụp',
    filter_modality_placeholder: 'ví dụ: CR',
    filter_from: 'Nhận từ ngày',
    filter_to: 'Nhận đến ngày',
    filter_reset: 'Đặt lại bộ lọc',
    col_priority: 'Mức ưu tiên',
    col_finding: 'Dấu hiệu chính',
    col_accession: 'Số tiếp nhận',
    col_modality: 'Phương thức',
    col_study_date: 'Ngày chụp',
    col_age: 'Thời gian chờ',
    col_status: 'Trạng thái',
    col_held_by: 'Người giữ',
    col_images: 'Số ảnh',
    worklist_loading: 'Đang tải…',
    worklist_empty: 'Không có ca chụp nào khớp với bộ lọc.',
    worklist_count: '{n} ca chụp',
    worklist_error: 'Không tải được danh sách đọc ({status}).',
    no_finding: 'Không có dấu hiệu',
    no_accession: '(không có số tiếp nhận)',
    live_connecting: 'Đang kết nối…',
    live_connected: 'Trực tiếp',
    live_reconnecting: 'Đang kết nối lại…',
    critical_alert: 'Ca NGUY KỊCH mới: {accession}',
    alert_close: 'Đóng',
    keyboard_help: 'Phím tắt: j / k di chuyển, Enter mở, c nhận ca đang chọn.',
    claimed_ok: 'Đã nhận ca {accession}.',

    age_just_now: 'vừa xong',
    age_min: '{n} phút',
    age_hours: '{h} giờ {m} phút',
    age_days: '{d} ngày {h} giờ',

    claim: 'Nhận ca',
    mark_read: 'Đã đọc',
    dismiss: 'Bỏ qua',
    actions: 'Thao tác',
    status_updated: 'Đã cập nhật trạng thái.',
    forbidden: 'Vai trò của bạn không được phép thực hiện thao tác này.',
    action_failed: 'Thao tác thất bại ({status}).',
    network_error: 'Lỗi mạng — vui lòng thử lại.',

    back_to_worklist: '← Quay lại danh sách đọc',
    study_title: 'Ca chụp',
    study_loading: 'Đang tải ca chụp…',
    study_error: 'Không tải được ca chụp ({status}).',
    study_not_found: 'Không tìm thấy ca chụp.',
    label_priority: 'Mức ưu tiên',
    label_status: 'Trạng thái',
    label_accession: 'Số tiếp nhận',
    label_study_date: 'Ngày chụp',
    label_modality: 'Phương thức',
    label_received: 'Nhận lần đầu',
    label_images: 'Số ảnh',
    label_reasons: 'Lý do',
    reason_entry: '{finding}: điểm {score} ≥ ngưỡng {threshold} ({op})',
    open_viewer: 'Mở trong trình xem ảnh của bệnh viện',
    images_title: 'Ảnh',
    image_heading: 'Ảnh {n} — tư thế {view}',
    view_unknown: 'không rõ',
    preview_alt: 'Ảnh xem trước X-quang ngực, ảnh {n}',
    no_preview: 'Không có ảnh xem trước cho ảnh này.',
    wl_label: 'Cửa sổ/mức',
    wl_default: 'Mặc định',
    wl_lung: 'Phổi',
    wl_bone: 'Xương',
    wl_soft: 'Mô mềm',
    zoom_label: 'Thu phóng',
    zoom_in: 'Phóng to',
    zoom_out: 'Thu nhỏ',
    zoom_reset: 'Đặt lại thu phóng',
    heatmap_show: 'Hiện bản đồ nhiệt',
    heatmap_opacity: 'Độ đậm bản đồ nhiệt',
    heatmap_finding: 'Bản đồ nhiệt của',
    heatmap_none: 'Ảnh này không có bản đồ nhiệt.',
    heatmap_error: 'Không tải được bản đồ nhiệt.',
    regions_show: 'Hiện khung vùng',
    findings_title: 'Dấu hiệu',
    th_finding: 'Dấu hiệu',
    th_score: 'Điểm đã hiệu chuẩn',
    th_verdict: 'Kết luận tại ngưỡng vận hành đang dùng',
    th_operating_points: 'Tất cả các ngưỡng vận hành',
    verdict_positive: 'Dương tính',
    verdict_negative: 'Âm tính',
    op_entry: '{name}: ngưỡng {threshold} → {verdict}',
    op_in_use: '(đang dùng)',
    no_findings: 'Không có dấu hiệu nào được báo cáo cho ảnh này.',
    provenance_title: 'Mô hình',
    provenance_entry: '{model} phiên bản {version} ({provider})',
    not_analyzed_title: 'AI chưa phân tích',
    radiologist_must_read: 'Bác sĩ chẩn đoán hình ảnh phải đọc ảnh này.',
    reason_lateral_view: 'Phim chụp nghiêng — AI chỉ đọc phim ngực thẳng.',
    reason_not_chest: 'Đây không phải là ảnh ngực.',
    reason_decode_failed: 'Không giải mã được ảnh.',
    reason_inference_failed: 'Phân tích AI bị lỗi.',
    reason_unsupported: 'Loại ảnh này không được hỗ trợ.',

    op_screening: 'sàng lọc',
    op_high_specificity: 'độ đặc hiệu cao',
    op_specificity: 'độ đặc hiệu',
    op_rule_out: 'loại trừ',

    finding_tuberculosis: 'Lao phổi',
    finding_malignant_nodule: 'Nốt phổi ác tính',
    finding_pneumothorax: 'Tràn khí màng phổi',
    finding_pleural_effusion: 'Tràn dịch màng phổi',
    finding_pneumonia: 'Viêm phổi',
    finding_cardiomegaly: 'Bóng tim to',

    login_title: 'Đăng nhập',
    login_user: 'Tên đăng nhập',
    login_password: 'Mật khẩu',
    login_submit: 'Đăng nhập',
    login_error: 'Sai tên đăng nhập hoặc mật khẩu.',
    login_throttled: 'Đăng nhập sai quá nhiều lần. Vui lòng đợi vài phút rồi thử lại.',
    login_oidc_error: 'Đăng nhập bằng tài khoản bệnh viện chưa hoàn tất. Vui lòng thử lại.',
    login_oidc: 'Đăng nhập bằng tài khoản bệnh viện',

    // Điều hướng
    nav_label: 'Các trang',
    nav_worklist: 'Danh sách đọc',
    nav_campaigns: 'Đợt sàng lọc',
    nav_audit: 'Nhật ký truy cập',

    // Đợt sàng lọc
    campaigns_title: 'Các đợt sàng lọc',
    campaigns_intro: 'Kết quả các lần chạy cxr-triage score trong thư mục đợt sàng lọc. Đợt đang chạy tự cập nhật.',
    campaigns_empty: 'Chưa có đợt sàng lọc nào. Hãy chạy cxr-triage score và lưu kết quả vào thư mục đợt sàng lọc.',
    camp_col_name: 'Đợt sàng lọc',
    camp_col_state: 'Trạng thái',
    camp_col_done: 'Đã xử lý',
    camp_col_updated: 'Cập nhật lần cuối',
    camp_running: 'Đang chạy',
    camp_finished: 'Đã xong',
    camp_stalled: 'Không tiến triển trong {min} phút',
    camp_unknown: 'Không có tệp tiến độ',
    camp_progress: '{done} trên {total} ảnh ({pct} %), {failed} lỗi',
    camp_images: '{n} ảnh',
    camp_by_priority: 'Số ảnh theo mức ưu tiên',
    camp_not_analysed: 'Không phân tích được (chờ người đọc)',
    camp_histogram: '{finding}: phân bố điểm',
    camp_histogram_label: 'Biểu đồ phân bố điểm {finding}: {n} ảnh đã phân tích',
    camp_histogram_note: '{n} ảnh đã phân tích; đường nét đứt: nơi mỗi ngưỡng vận hành bắt đầu cảnh báo.',
    camp_bin: '{from}–{to}: {n} ảnh',
    camp_roc: 'Đường cong ROC',
    camp_roc_label: 'Đường cong ROC của {finding}, AUC {auc}',
    camp_auc: 'AUC {auc} (KTC 95 % {lo}–{hi}), {n} ảnh có kết quả chuẩn, {pos} dương tính.',
    camp_fpr: '1 − độ đặc hiệu',
    camp_tpr: 'Độ nhạy',
    camp_op: 'Ngưỡng vận hành',
    camp_sens: 'Độ nhạy',
    camp_spec: 'Độ đặc hiệu',
    camp_ppv: 'GTTĐ dương',
    camp_npv: 'GTTĐ âm',
    camp_flagged: 'Tỷ lệ cảnh báo',
    camp_no_truth: 'Đợt này chưa được đánh giá với kết quả chuẩn (cxr-triage evaluate --json, lưu thành TÊN.evaluation.json).',
    camp_unreadable: 'Không đọc được kết quả của đợt sàng lọc.',

    // Nhật ký
    audit_title: 'Nhật ký truy cập',
    audit_intro: 'Mọi lần truy cập dữ liệu bệnh nhân và mọi thay đổi, theo thứ tự; mỗi bản ghi mang mã băm của bản ghi trước.',
    audit_pages: 'Các trang nhật ký',
    audit_first: 'Cũ nhất',
    audit_prev: 'Trước',
    audit_next: 'Sau',
    audit_latest: 'Mới nhất',
    audit_col_seq: 'STT',
    audit_col_when: 'Thời điểm',
    audit_col_who: 'Người dùng',
    audit_col_roles: 'Vai trò',
    audit_col_method: 'Cách xác thực',
    audit_col_action: 'Thao tác',
    audit_col_object: 'Đối tượng',
    audit_col_address: 'Địa chỉ',
    audit_col_outcome: 'Kết quả',
    audit_chain_ok: 'Chuỗi mã băm trên trang này còn nguyên vẹn',
    audit_chain_broken: 'Chuỗi mã băm trên trang này BỊ HỎNG',
    audit_range: 'Bản ghi {from}–{to} trên {last}',
  },
};

/** The page language: `en` or `vi` (from <html lang>), `en` otherwise. */
function pageLang() {
  const l = (document.documentElement.lang || 'en').slice(0, 2).toLowerCase();
  return Object.prototype.hasOwnProperty.call(window.I18N, l) ? l : 'en';
}

/** Locale for Intl: vi-VN or en-GB. */
function pageLocale() {
  return pageLang() === 'vi' ? 'vi-VN' : 'en-GB';
}

/** Whether `key` exists (in the page language or English). */
function hasKey(key) {
  const has = (d) => Object.prototype.hasOwnProperty.call(d, key);
  return has(window.I18N[pageLang()]) || has(window.I18N.en);
}

/**
 * Translate `key`, replacing `{name}` with `vars.name`. Falls back to
 * English, then to the key itself (with a console error).
 */
function t(key, vars) {
  const dict = window.I18N[pageLang()];
  let s = Object.prototype.hasOwnProperty.call(dict, key) ? dict[key] : window.I18N.en[key];
  if (s === undefined) {
    console.error('i18n: missing key', key);
    s = key;
  }
  if (vars) {
    s = s.replace(/\{(\w+)\}/g, (m, name) =>
      Object.prototype.hasOwnProperty.call(vars, name) ? String(vars[name]) : m);
  }
  return s;
}

/**
 * Apply the dictionary under `root`: `data-i18n="key"` sets the text,
 * `data-i18n-attr="placeholder:key; title:key2"` sets attributes.
 */
function applyI18n(root) {
  const scope = root || document;
  scope.querySelectorAll('[data-i18n]').forEach((el) => {
    el.textContent = t(el.getAttribute('data-i18n'));
  });
  scope.querySelectorAll('[data-i18n-attr]').forEach((el) => {
    el.getAttribute('data-i18n-attr').split(';').forEach((pair) => {
      const i = pair.indexOf(':');
      if (i < 0) return;
      const attr = pair.slice(0, i).trim();
      const key = pair.slice(i + 1).trim();
      if (attr && key) el.setAttribute(attr, t(key));
    });
  });
}

/** A timestamp (ms since epoch) as a localised date and time. */
function fmtDate(ms) {
  if (ms === null || ms === undefined || !isFinite(ms)) return '—';
  return new Intl.DateTimeFormat(pageLocale(), { dateStyle: 'medium', timeStyle: 'short' })
    .format(new Date(ms));
}

/** A DICOM date (YYYYMMDD) as a localised date; other text as is. */
function fmtStudyDate(s) {
  const m = /^(\d{4})(\d{2})(\d{2})$/.exec(String(s || '').trim());
  if (!m) return s ? String(s) : '—';
  const d = new Date(Date.UTC(+m[1], +m[2] - 1, +m[3]));
  return new Intl.DateTimeFormat(pageLocale(), { dateStyle: 'medium', timeZone: 'UTC' }).format(d);
}

/** A duration in ms as a short age: "5 min", "2 h 3 min", "1 d 4 h". */
function fmtAge(ms) {
  const min = Math.floor(Math.max(0, ms || 0) / 60000);
  if (min < 1) return t('age_just_now');
  if (min < 60) return t('age_min', { n: fmtNumber(min, 0) });
  const h = Math.floor(min / 60);
  if (h < 24) return t('age_hours', { h: fmtNumber(h, 0), m: fmtNumber(min % 60, 0) });
  return t('age_days', { d: fmtNumber(Math.floor(h / 24), 0), h: fmtNumber(h % 24, 0) });
}

/** A number with exactly `digits` decimals in the page's locale. */
function fmtNumber(x, digits) {
  if (x === null || x === undefined || !isFinite(x)) return '—';
  const d = digits === undefined ? 2 : digits;
  return new Intl.NumberFormat(pageLocale(), {
    minimumFractionDigits: d,
    maximumFractionDigits: d,
  }).format(x);
}

/** A finding's name: translated for known ids, else the API's display name. */
function findingName(id, displayName) {
  const key = 'finding_' + id;
  if (id && hasKey(key)) return t(key);
  return displayName || id || '—';
}

/** An operating point's name: translated when known, else as sent. */
function opName(name) {
  return name && hasKey('op_' + name) ? t('op_' + name) : String(name || '—');
}

// ---------------------------------------------------------------------------
// Shared UI helpers (used by worklist.js and study.js).

window.CXR = (function () {
  const PRIORITY_ICONS = { CRITICAL: '▲▲', URGENT: '▲', NOT_ANALYZED: '?', ROUTINE: '•' };

  /** Create an element; text is always set with textContent. */
  function el(tag, attrs, children) {
    const e = document.createElement(tag);
    if (attrs) {
      for (const [k, v] of Object.entries(attrs)) {
        if (v === null || v === undefined || v === false) continue;
        if (k === 'text') e.textContent = v;
        else if (k === 'class') e.className = v;
        else e.setAttribute(k, v === true ? '' : String(v));
      }
    }
    (children || []).forEach((c) => {
      if (c === null || c === undefined) return;
      e.appendChild(typeof c === 'string' ? document.createTextNode(c) : c);
    });
    return e;
  }

  /** `CRITICAL` → `critical`, `NOT_ANALYZED` → `not-analyzed`. */
  function prioClass(p) {
    return String(p || 'ROUTINE').toLowerCase().replace(/_/g, '-');
  }

  /** A priority badge: colour + icon + text label. */
  function priorityBadge(priority) {
    const p = PRIORITY_ICONS[priority] ? priority : 'ROUTINE';
    return el('span', { class: 'prio-badge prio-' + prioClass(p), 'data-priority': p }, [
      el('span', { class: 'prio-icon', 'aria-hidden': 'true', text: PRIORITY_ICONS[p] }),
      el('span', { class: 'prio-label', text: t('prio_' + p) }),
    ]);
  }

  /** A status label (translated when known). */
  function statusLabel(status) {
    return hasKey('status_' + status) ? t('status_' + status) : String(status || '—');
  }

  /** The path to come back to after signing in. */
  function loginUrl() {
    return '/login?next=' + encodeURIComponent(location.pathname + location.search);
  }

  /**
   * fetch() with the session cookie; a 401 sends the browser to the login
   * page (and the returned promise never settles).
   */
  async function api(url, opts) {
    const res = await fetch(url, Object.assign({ credentials: 'same-origin' }, opts || {}));
    if (res.status === 401 && !document.getElementById('login-form')) {
      location.href = loginUrl();
      return new Promise(() => {});
    }
    return res;
  }

  /** POST a new status for a study; resolves to the Response. */
  function postStatus(uid, status) {
    return api('/api/studies/' + encodeURIComponent(uid) + '/status', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
      body: JSON.stringify({ status }),
    });
  }

  return { el, prioClass, priorityBadge, statusLabel, api, postStatus, loginUrl, PRIORITY_ICONS };
})();

// ---------------------------------------------------------------------------
// Header: language switch and signed-in user; the login form.

function setupHeader() {
  const lang = pageLang();
  document.querySelectorAll('[data-set-lang]').forEach((btn) => {
    const l = btn.getAttribute('data-set-lang');
    btn.setAttribute('aria-pressed', l === lang ? 'true' : 'false');
    btn.addEventListener('click', () => {
      document.cookie = 'cxr_lang=' + (l === 'vi' ? 'vi' : 'en') + '; path=/; SameSite=Strict';
      location.reload();
    });
  });

  // Who is signed in (GET /api/me → {user, roles, lang, signed_in}).
  const box = document.getElementById('user-box');
  if (box) {
    fetch('/api/me', { credentials: 'same-origin', headers: { Accept: 'application/json' } })
      .then((res) => (res.ok ? res.json() : null))
      .then((me) => {
        if (!me) return;
        const name = document.getElementById('user-name');
        if (name) name.textContent = me.user || '';
        box.hidden = false;
        const nav = document.getElementById('site-nav');
        if (nav) {
          nav.hidden = false;
          const admin = document.getElementById('nav-admin');
          if (admin) admin.hidden = !(me.roles || []).includes('admin');
          const here = document.body.className.replace(/^page-/, '');
          nav.querySelectorAll('[data-nav]').forEach((a) => {
            const cur = a.getAttribute('data-nav') === here
              || (here === 'study' && a.getAttribute('data-nav') === 'worklist');
            if (cur) a.setAttribute('aria-current', 'page');
          });
        }
        // No session to end when the server runs without sign-in.
        const out = document.getElementById('logout-form');
        if (out && me.signed_in === false) out.hidden = true;
      })
      .catch(() => {});
  }
}

function setupLogin() {
  const form = document.getElementById('login-form');
  if (!form) return;
  const params = new URLSearchParams(location.search);
  // Only same-site paths (the server checks this too).
  const next = params.get('next') || '/';
  const safe = next.startsWith('/') && !next.startsWith('//') && !next.includes('\\');
  const hidden = form.querySelector('input[name="next"]');
  if (hidden) hidden.value = safe ? next : '/';
  const err = document.getElementById('login-error');
  const code = params.get('error');
  const messages = { 1: 'login_error', throttled: 'login_throttled', oidc: 'login_oidc_error' };
  if (err) {
    err.hidden = !messages[code];
    if (messages[code]) err.textContent = t(messages[code]);
  }
  const link = document.getElementById('oidc-link');
  if (link) {
    link.href = '/oidc/start?next=' + encodeURIComponent(safe ? next : '/');
    const label = link.getAttribute('data-label');
    if (label) link.textContent = label;
  }
  const user = form.querySelector('input[name="user"]');
  if (user) user.focus();
}

function i18nInit() {
  applyI18n(document);
  setupHeader();
  setupLogin();
}

if (document.readyState === 'loading') {
  document.addEventListener('DOMContentLoaded', i18nInit);
} else {
  i18nInit();
}
