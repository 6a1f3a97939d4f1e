/* Touchpoint journey-map viewer: plain JavaScript and SVG, no dependencies, no build step.
   It draws the JourneyMap JSON embedded in the page (figures defined in docs/journey-map.md)
   and, on a live page, asks the collector's /v1/map for it again. All text from the data
   goes into the page as text nodes or attribute values, never as markup. */
(function () {
  'use strict';

  // -- set-up ------------------------------------------------------------------------------

  var SVGNS = (function () {
    var probe = document.createElement('div');
    probe.innerHTML = '<svg></svg>';
    return probe.firstChild.namespaceURI;
  })();

  function readJSON(id) {
    var node = document.getElementById(id);
    return node ? JSON.parse(node.textContent || 'null') : null;
  }

  var boot = readJSON('tp-boot') || {};
  var state = {
    map: readJSON('tp-map'),
    live: !!boot.live,
    compare: true,
    edgeCap: 50,
    selected: null,
    loading: false,
    seq: 0,
    error: '',
    updatedAt: new Date(),
    auto: true,
    timer: 0,
    filters: { since: '', source: '', channel: '', persona: '' },
    exports: {},
    ix: null,
  };

  // Okabe-Ito, plus a perceptually ordered ramp (viridis stops) for time.
  var C = {
    ink: '#1b1f24', muted: '#556070', line: '#d8dee6', soft: '#f3f5f8',
    blue: '#0072b2', sky: '#56b4e9', green: '#009e73', orange: '#e69f00',
    vermillion: '#d55e00', purple: '#cc79a7', yellow: '#f0e442', grey: '#98a2ae',
  };
  var TIME_RAMP = ['#7ad151', '#22a884', '#2a788e', '#414487', '#440154'];
  var TIME_MIN = 60;
  var TIME_MAX = 30 * 86400;
  var FONT = 'system-ui, -apple-system, Segoe UI, Roboto, Helvetica Neue, Arial, DejaVu Sans, sans-serif';
  var PHASES = {
    before_purchase: 'Before purchase',
    during_purchase: 'During purchase',
    after_purchase: 'After purchase',
  };
  var PAIN_KINDS = {
    dropoff: 'Drop-off',
    slow_step: 'Slow step',
    loop: 'Loop',
    post_goal_issue: 'After the goal',
    low_score: 'Low score',
  };
  var WINDOWS = [
    ['1d', 'Last 24 hours'],
    ['7d', 'Last 7 days'],
    ['30d', 'Last 30 days'],
    ['90d', 'Last 90 days'],
    ['180d', 'Last 180 days'],
    ['365d', 'Last 365 days'],
    ['all', 'All time'],
  ];
  var NARROW = '(max-width: 760px)';
  var ALL_TIME = '36500d';

  // -- small helpers -------------------------------------------------------------------------

  function $(id) { return document.getElementById(id); }

  function build(node, attrs, kids) {
    if (attrs) {
      Object.keys(attrs).forEach(function (key) {
        var value = attrs[key];
        if (value == null || value === false) return;
        if (key === 'text') node.textContent = String(value);
        else if (key === 'style') {
          Object.keys(value).forEach(function (prop) { node.style.setProperty(prop, String(value[prop])); });
        } else if (key.slice(0, 2) === 'on' && typeof value === 'function') {
          node.addEventListener(key.slice(2), value);
        } else node.setAttribute(key, value === true ? '' : String(value));
      });
    }
    kids.flat(Infinity).forEach(function (kid) {
      if (kid == null || kid === false) return;
      node.appendChild(typeof kid === 'object' ? kid : document.createTextNode(String(kid)));
    });
    return node;
  }
  /* Replace a node's children with `kids` (nested lists and nulls allowed). */
  function fill(node, kids) {
    node.replaceChildren();
    build(node, null, [kids]);
    return node;
  }
  function h(tag, attrs) { return build(document.createElement(tag), attrs, [].slice.call(arguments, 2)); }
  function s(tag, attrs) { return build(document.createElementNS(SVGNS, tag), attrs, [].slice.call(arguments, 2)); }

  var intFormat = new Intl.NumberFormat('en-US');
  function fmtInt(n) { return n == null ? '–' : intFormat.format(Math.round(n)); }
  function fmtPct(x) {
    if (x == null || !isFinite(x)) return '–';
    var v = x * 100;
    return (v !== 0 && Math.abs(v) < 10 && Math.round(v) !== v ? v.toFixed(1) : String(Math.round(v))) + '%';
  }
  function fmtDur(sec) {
    if (sec == null || !isFinite(sec)) return '–';
    if (sec >= 86400) return (sec / 86400).toFixed(1) + ' d';
    if (sec >= 3600) return (sec / 3600).toFixed(1) + ' h';
    if (sec >= 60) return Math.round(sec / 60) + ' min';
    return Math.round(sec) + ' s';
  }
  function fmtDate(iso) {
    if (!iso) return '–';
    var d = new Date(iso);
    if (isNaN(d.getTime())) return String(iso);
    return d.toISOString().slice(0, 16).replace('T', ' ') + ' UTC';
  }
  function fmtDay(iso) {
    var d = new Date(iso);
    return isNaN(d.getTime()) ? String(iso) : d.toISOString().slice(0, 10);
  }
  function fmtOdds(x) {
    if (x == null || !isFinite(x)) return '–';
    if (x >= 100) return fmtInt(x);
    if (x >= 10) return x.toFixed(1);
    return x.toFixed(2);
  }
  function fmtSigned(x, digits) {
    if (x == null || !isFinite(x)) return '–';
    return (x > 0 ? '+' : x < 0 ? '−' : '±') + Math.abs(x).toFixed(digits);
  }
  function label(id) {
    if (id === 'START') return 'Start';
    if (id === 'END') return 'Ended';
    if (id === 'IN_PROGRESS') return 'In progress';
    if (id.indexOf('other:') === 0) return 'Other ' + id.slice(6);
    return id.replace(/_/g, ' ');
  }
  function cap(text) { return text ? text.charAt(0).toUpperCase() + text.slice(1) : text; }
  function plural(n, one, many) { return fmtInt(n) + ' ' + (n === 1 ? one : many || one + 's'); }
  function edgeKey(e) { return e.source + '\u2192' + e.target; }
  function trim(text, max) { return text.length > max ? text.slice(0, max - 1) + '…' : text; }
  function none(text) { return h('p', { class: 'none', text: text }); }
  function lerpColor(a, b, t) {
    var pa = parseInt(a.slice(1), 16);
    var pb = parseInt(b.slice(1), 16);
    var out = [16, 8, 0].map(function (shift) {
      var ca = (pa >> shift) & 255;
      var cb = (pb >> shift) & 255;
      return Math.round(ca + (cb - ca) * t);
    });
    return '#' + out.map(function (c) { return (c < 16 ? '0' : '') + c.toString(16); }).join('');
  }
  function timeColor(sec) {
    if (sec == null || !isFinite(sec)) return C.grey;
    var t = (Math.log(Math.max(sec, TIME_MIN)) - Math.log(TIME_MIN)) / (Math.log(TIME_MAX) - Math.log(TIME_MIN));
    t = Math.max(0, Math.min(1, t)) * (TIME_RAMP.length - 1);
    var i = Math.min(TIME_RAMP.length - 2, Math.floor(t));
    return lerpColor(TIME_RAMP[i], TIME_RAMP[i + 1], t - i);
  }
  function isNarrow() { return window.matchMedia(NARROW).matches; }

  /* A change against the previous period: an arrow for the direction (so colour is never
     the only cue), coloured by whether it is good news (`good`: +1 up is good, -1 down is
     good, 0 neither). */
  function delta(now, before, opts) {
    opts = opts || {};
    if (now == null || before == null || !isFinite(now) || !isFinite(before)) return null;
    var d = now - before;
    var flat = Math.abs(d) < (opts.pts ? 0.0005 : 0.5);
    var text = opts.pts ? Math.abs(d * 100).toFixed(1) + ' pts' : fmtInt(Math.abs(d));
    var good = opts.good == null ? 1 : opts.good;
    var tone = flat ? 'flat' : good === 0 ? 'neutral' : (d > 0) === (good > 0) ? 'good' : 'bad';
    var was = opts.pts ? fmtPct(before) : fmtInt(before);
    return h('span', {
      class: 'delta ' + tone,
      title: 'previous period: ' + was,
      'aria-label': (flat ? 'unchanged' : (d > 0 ? 'up ' : 'down ') + text) + ' since the previous period (was ' + was + ')',
      text: flat ? '± 0' : (d > 0 ? '▲ ' : '▼ ') + text,
    });
  }

  // -- the map's indexes ---------------------------------------------------------------------

  function index(m) {
    var ix = {};
    ix.nodes = new Map(m.nodes.map(function (n) { return [n.id, n]; }));
    ix.goal = m.settings.goal;
    ix.goalStage = ix.goal.indexOf('stage:') === 0 ? ix.goal.slice(6) : null;
    ix.isGoal = function (id) {
      var node = ix.nodes.get(id);
      return id === ix.goal || (!!ix.goalStage && !!node && node.kind === 'touchpoint' && node.stage === ix.goalStage);
    };
    ix.stages = m.grid.length ? m.grid.map(function (g) { return g.stage; }) : m.stages.map(function (r) { return r.stage; });
    ix.stageRow = new Map(m.stages.map(function (r) { return [r.stage, r]; }));
    ix.phaseOf = new Map(m.grid.map(function (g) { return [g.stage, g.phase]; }));
    var cmp = m.comparison;
    ix.cmp = cmp || null;
    ix.delta = new Map((cmp ? cmp.node_deltas : []).map(function (d) { return [d.node, d]; }));
    ix.newEdges = new Set((cmp ? cmp.new_edges : []).map(edgeKey));
    ix.shift = new Map((cmp ? cmp.stage_shifts : []).map(function (x) { return [x.stage, x]; }));
    ix.pains = new Map();
    m.pain_points.forEach(function (p) {
      if (!ix.pains.has(p.stage)) ix.pains.set(p.stage, []);
      ix.pains.get(p.stage).push(p);
    });
    ix.edges = new Map(m.edges.map(function (e) { return [edgeKey(e), e]; }));
    // more persons at a support contact, a return or a churn is bad news; at an end, neither
    var negative = new Set(m.settings.negative_touchpoints || []);
    ix.good = function (id) { return negative.has(id) ? -1 : id === 'END' || id === 'IN_PROGRESS' || id === 'START' ? 0 : 1; };
    return ix;
  }
  /* Deltas are drawn when asked for and when the previous period had anyone in it. */
  function comparing() { return state.compare && !!state.ix.cmp && state.ix.cmp.persons_before > 0; }

  // -- header, status, summary ---------------------------------------------------------------

  function windowText(m) {
    var f = m.filters;
    if (f.since && f.until) return fmtDay(f.since) + ' – ' + fmtDay(f.until);
    if (f.since) {
      var days = (new Date(m.coverage.as_of) - new Date(f.since)) / 86400000;
      if (days > 36000) return 'all time';
      return 'last ' + (days >= 1.5 ? Math.round(days) + ' days' : Math.round(days * 24) + ' hours') + ' (since ' + fmtDay(f.since) + ')';
    }
    if (f.until) return 'until ' + fmtDay(f.until);
    return 'all time';
  }
  function filterText(m) {
    var f = m.filters;
    var parts = [];
    if (f.sources && f.sources.length) parts.push('source ' + f.sources.join(', '));
    if (f.channels && f.channels.length) parts.push('channel ' + f.channels.join(', '));
    if (f.persona) parts.push('persona ' + f.persona);
    (f.properties || []).forEach(function (kv) { parts.push(kv[0] + ' = ' + kv[1]); });
    return parts.join(' · ');
  }

  function renderMeta() {
    var m = state.map;
    var cov = m.coverage;
    var goal = m.settings.goal;
    var items = [
      ['Built at', fmtDate(m.built_at), 'built-at'],
      ['Events', fmtInt(cov.events), 'events'],
      ['Persons', fmtInt(cov.persons), 'persons'],
      ['Window', windowText(m), 'window'],
      ['Goal', goal.indexOf('stage:') === 0 ? 'reaching ' + goal.slice(6) : label(goal), 'goal'],
    ];
    var filters = filterText(m);
    if (filters) items.push(['Filters', filters, 'filters']);
    fill($('meta'), items.map(function (it) {
      return h('div', { 'data-meta': it[2] }, h('dt', { text: it[0] }), h('dd', { text: it[1] }));
    }));
    var mode = $('mode');
    mode.className = 'mode ' + (state.live ? 'live' : 'snapshot');
    mode.textContent = state.live ? 'Live' : 'Snapshot';
  }

  function renderStatus() {
    var status = $('status');
    var parts = [];
    if (state.live) {
      parts.push(state.loading ? 'Building the map…' : 'Updated ' + state.updatedAt.toLocaleTimeString('en-GB'));
      parts.push(state.auto ? 'refreshes every ' + boot.poll_seconds + ' s' : 'auto-refresh off');
    } else {
      parts.push('Exported snapshot of ' + fmtDate(state.map.built_at));
    }
    status.replaceChildren(parts.join(' · '));
    if (state.error) status.appendChild(h('span', { class: 'err', text: ' · ' + state.error }));
  }

  function kpi(key, title, value, sub, change) {
    return h('div', { class: 'kpi', 'data-kpi': key },
      h('div', { class: 'k', text: title }),
      h('div', { class: 'v', text: value }),
      h('div', { class: 's' }, sub || '', change ? [' ', change] : null));
  }

  function renderSummary() {
    var m = state.map;
    var cov = m.coverage;
    var cmp = comparing() ? state.ix.cmp : null;
    $('summary').replaceChildren(
      kpi('persons', 'Persons', fmtInt(cov.persons), cmp ? 'previous period ' + fmtInt(cmp.persons_before) : 'distinct persons',
        cmp ? delta(cov.persons, cmp.persons_before) : null),
      kpi('journeys', 'Journeys', fmtInt(cov.journeys), fmtInt(cov.in_progress_journeys) + ' in progress, ' + fmtInt(cov.ended_journeys) + ' ended'),
      kpi('goal', 'Reached the goal', fmtPct(cov.goal_rate), plural(cov.converted_persons, 'person')),
      kpi('events', 'Events', fmtInt(cov.events), cov.first_event ? fmtDay(cov.first_event) + ' – ' + fmtDay(cov.last_event) : 'none in the window'),
      kpi('stitched', 'Stitched journeys', fmtPct(cov.stitched_share), 'anonymous visits joined to a known person'));
  }

  // -- the journey-map grid ------------------------------------------------------------------

  var LANES = [
    ['phase'],
    ['stage'],
    ['touchpoints', 'Touchpoints', 'bar = reach, share of all persons'],
    ['channels', 'Channels', 'share of the stage’s steps'],
    ['conversion', 'Next stage', 'continue or drop off'],
    ['time', 'Time in stage', 'median per journey'],
    ['curve', 'Sentiment', 'derived, −1 to +1'],
    ['feelings', 'Feelings', 'derived from scores and negative signals'],
    ['pain', 'Pain points', 'with their evidence'],
    ['opportunities', 'Opportunities', 'suggested actions'],
  ];

  function renderGrid() {
    var m = state.map;
    var grid = $('grid');
    var cols = m.grid;
    grid.replaceChildren();
    grid.style.setProperty('--n', String(Math.max(1, cols.length)));
    if (!cols.length) {
      grid.appendChild(h('div', { class: 'cell' }, none('No stages in this map.')));
      return;
    }
    function cell(row, col, span, order, cls, kids) {
      var node = h('div', {
        class: 'cell r' + row + ' c' + col + (cls ? ' ' + cls : ''),
        style: { 'grid-row': String(row + 1), 'grid-column': (col + 1) + ' / span ' + span, '--o': String(order) },
      }, kids);
      grid.appendChild(node);
      return node;
    }
    LANES.forEach(function (lane, row) {
      if (row >= 2) {
        cell(row, 0, 1, 0, 'lane-label' + (lane[0] === 'curve' ? ' curve-label' : ''), [
          lane[1], lane[0] === 'curve' || lane[0] === 'feelings' ? [' ', h('span', { class: 'tag kind', text: 'derived' })] : null,
          h('small', { text: lane[2] })]);
      }
    });
    cell(0, 0, 1, 0, 'lane-label phase', []);
    cell(1, 0, 1, 0, 'lane-label', ['Stage', h('small', { text: 'persons with a step in it' })]);
    // phase header: one cell per run of columns in the same phase
    var start = 0;
    for (var i = 1; i <= cols.length; i++) {
      if (i === cols.length || cols[i].phase !== cols[start].phase) {
        cell(0, start + 1, i - start, 0, 'phase ph-' + cols[start].phase, [PHASES[cols[start].phase] || cols[start].phase]);
        start = i;
      }
    }
    cols.forEach(function (col, k) {
      var base = 100 + k * 20;
      var zero = col.persons ? '' : ' zero';
      cell(1, k + 1, 1, base + 1, 'stage-head ph-' + col.phase + zero, stageHead(col)).setAttribute('data-stage', col.stage);
      cell(2, k + 1, 1, base + 2, 'lane-tp' + zero, [h('div', { class: 'cl', text: 'Touchpoints · reach' }), touchpointLane(col)]);
      cell(3, k + 1, 1, base + 3, 'lane-ch' + zero, [h('div', { class: 'cl', text: 'Channels' }), channelLane(col)]);
      cell(4, k + 1, 1, base + 4, 'conv' + zero, [h('div', { class: 'cl', text: 'Next stage' }), conversionLane(col, k)]);
      cell(5, k + 1, 1, base + 5, 'time' + zero, [h('div', { class: 'cl', text: 'Time in stage' }), timeLane(col)]);
      cell(7, k + 1, 1, base + 7, 'feel' + zero, [h('div', { class: 'cl' }, 'Feelings ', h('span', { class: 'tag kind', text: 'derived' })), feelingsLane(col)]);
      cell(8, k + 1, 1, base + 8, 'lane-pain' + zero, [h('div', { class: 'cl', text: 'Pain points' }), painLane(col)]);
      cell(9, k + 1, 1, base + 9, 'lane-opp last-lane' + zero, [h('div', { class: 'cl', text: 'Opportunities' }), opportunityLane(col)]);
    });
    var curve = cell(6, 1, cols.length, 50, 'curve-cell', [
      h('div', { class: 'cl' }, 'Sentiment across stages ', h('span', { class: 'tag kind', text: 'derived' })),
      h('div', { class: 'curve', id: 'curve' })]);
    curve.setAttribute('data-lane', 'sentiment');
    drawCurve();
  }

  function stageHead(col) {
    var kids = [
      h('div', { class: 'ph', text: PHASES[col.phase] || col.phase }),
      h('h3', { text: col.stage }),
      h('div', { class: 'sp' }, h('b', { class: 'stage-persons', text: fmtInt(col.persons) }), col.persons === 1 ? ' person' : ' persons'),
      col.persons ? null : h('div', { class: 'zero-note', text: 'Nobody reached this stage.' }),
    ];
    return kids;
  }

  function touchpointLane(col) {
    var ix = state.ix;
    if (!col.touchpoints.length) return none('No touchpoints.');
    var rows = col.touchpoints.map(function (tp) {
      var node = ix.nodes.get(tp.touchpoint);
      var goal = ix.isGoal(tp.touchpoint);
      var cross = !!(node && node.cross_cutting);
      var d = comparing() ? ix.delta.get(tp.touchpoint) : null;
      return h('div', {
        class: 'tp' + (goal ? ' goal' : '') + (cross ? ' cross' : ''),
        'data-touchpoint': tp.touchpoint,
        'data-persons': String(tp.persons),
      },
      h('div', { class: 'tp-head' },
        h('span', { class: 'tp-name', title: tp.touchpoint, text: label(tp.touchpoint) }),
        h('span', { class: 'num', text: fmtPct(tp.reach) })),
      h('div', { class: 'bar', role: 'img', 'aria-label': label(tp.touchpoint) + ': reach ' + fmtPct(tp.reach) },
        h('span', { style: { width: Math.max(0, Math.min(100, tp.reach * 100)).toFixed(1) + '%' } })),
      h('div', { class: 'tp-sub' },
        h('span', null, plural(tp.persons, 'person'),
          goal ? [' ', h('span', { class: 'tag goal', text: '★ goal' })] : null,
          cross ? [' ', h('span', { class: 'tag cross', text: 'cross-cutting' })] : null),
        d ? delta(d.reach_now, d.reach_before, { pts: true, good: ix.good(tp.touchpoint) }) : null));
    });
    var shown = 6;
    if (rows.length <= shown + 1) return rows;
    return [rows.slice(0, shown), h('details', { class: 'more-list' },
      h('summary', { text: (rows.length - shown) + ' more' }), rows.slice(shown))];
  }

  function channelLane(col) {
    if (!col.channels.length) return none('No steps.');
    var rows = col.channels.map(function (ch) {
      return h('div', { class: 'ch', 'data-channel': ch.channel },
        h('div', { class: 'ch-head' },
          h('span', { class: 'ch-name' }, ch.channel.replace(/_/g, ' '), ' ',
            h('span', { class: 'tag ' + (ch.online ? 'online' : 'offline'), text: ch.online ? 'online' : 'offline' })),
          h('span', { class: 'num', text: fmtPct(ch.share) })),
        h('div', { class: 'bar' + (ch.online ? '' : ' offline'), role: 'img', 'aria-label': ch.channel + ' (' + (ch.online ? 'online' : 'offline') + '): ' + fmtPct(ch.share) + ' of steps' },
          h('span', { style: { width: (ch.share * 100).toFixed(1) + '%' } })));
    });
    if (rows.length <= 5) return rows;
    return [rows.slice(0, 4), h('details', { class: 'more-list' }, h('summary', { text: (rows.length - 4) + ' more' }), rows.slice(4))];
  }

  function conversionLane(col) {
    var row = state.ix.stageRow.get(col.stage);
    var out = [];
    if (col.conversion_to_next == null) {
      out.push(h('p', null, h('span', { class: 'big', text: '—' })), h('p', { class: 'none', text: row && !row.next_stage ? 'Last stage.' : 'No persons.' }));
    } else {
      out.push(h('p', null, h('span', { class: 'big', 'data-value': 'conversion', text: fmtPct(col.conversion_to_next) }), ' go on to ', h('b', { text: row ? row.next_stage : 'next' })));
      var shift = comparing() ? state.ix.shift.get(col.stage) : null;
      if (shift && shift.rate_before != null) {
        out.push(h('p', null, 'was ' + fmtPct(shift.rate_before) + ' ', delta(shift.rate_now, shift.rate_before, { pts: true }),
          shift.significant ? [' ', h('span', { class: 'tag sig', title: 'two-proportion z = ' + (shift.z == null ? '–' : shift.z.toFixed(2)), text: 'significant' })] : null));
      }
    }
    if (col.dropoff_rate != null) {
      out.push(h('p', { class: 'drop' }, '✕ ', h('b', { 'data-value': 'dropoff', text: fmtPct(col.dropoff_rate) }), ' end their journey here', row ? ' (' + fmtInt(row.dropped_persons) + ')' : ''));
    }
    return out;
  }

  function timeLane(col) {
    var row = state.ix.stageRow.get(col.stage);
    var out = [h('div', { class: 'big', text: fmtDur(col.median_seconds_in_stage) })];
    if (row && row.median_seconds_to_next != null) {
      out.push(h('p', { text: 'to ' + row.next_stage + ': median ' + fmtDur(row.median_seconds_to_next) + ', p90 ' + fmtDur(row.p90_seconds_to_next) }));
    }
    return out;
  }

  function feelingsLane(col) {
    return [
      h('div', { class: 'big', text: col.sentiment == null ? '–' : fmtSigned(col.sentiment, 2) }),
      h('p', { text: col.mean_score == null ? 'no feedback scores' : 'mean score ' + col.mean_score.toFixed(1) + ' / 10' }),
      h('p', { text: fmtPct(col.negative_signal_rate) + ' with a negative signal' }),
    ];
  }

  function painEvidence(p) {
    var rate = p.kind === 'slow_step' ? fmtDur(p.rate) : fmtPct(p.rate);
    var base = p.kind === 'slow_step' ? fmtDur(p.baseline) : fmtPct(p.baseline);
    return plural(p.persons, 'person') + ' · ' + rate + ' vs ' + base + ' baseline';
  }
  function painCard(p) {
    return h('div', { class: 'pain', 'data-pain': p.kind, 'data-touchpoint': p.touchpoint },
      h('div', null, h('span', { class: 'tag kind', text: PAIN_KINDS[p.kind] || p.kind }), ' ', h('b', { text: label(p.touchpoint) })),
      h('p', { text: p.detail }),
      h('p', { class: 'ev', text: painEvidence(p) }),
      p.examples.length ? h('p', { class: 'ex', title: 'example persons: ' + p.examples.join(', ') },
        h('span', { class: 'ev', text: 'e.g. ' }), p.examples.slice(0, 3).map(function (id) { return h('code', { text: id }); }),
        p.examples.length > 3 ? h('span', { class: 'ev', text: '+' + (p.examples.length - 3) + ' more' }) : null) : null);
  }
  function painLane(col) {
    var pains = state.ix.pains.get(col.stage) || [];
    if (!pains.length) {
      if (col.pain_points.length) return col.pain_points.map(function (d) { return h('div', { class: 'pain' }, h('p', { text: d })); });
      return none('None found.');
    }
    var cards = pains.map(painCard);
    if (cards.length <= 3) return cards;
    return [cards.slice(0, 2), h('details', { class: 'more-list' }, h('summary', { text: (cards.length - 2) + ' more' }), cards.slice(2))];
  }
  function opportunityLane(col) {
    if (!col.opportunities.length) return none('None suggested.');
    var items = col.opportunities.map(function (o) { return h('li', { text: o }); });
    if (items.length <= 4) return h('ul', { class: 'opps' }, items);
    return [h('ul', { class: 'opps' }, items.slice(0, 3)),
      h('details', { class: 'more-list' }, h('summary', { text: (items.length - 3) + ' more' }), h('ul', { class: 'opps' }, items.slice(3)))];
  }

  /* The classic emotion curve, across the stage columns. Derived (see the lane label). */
  function drawCurve() {
    var holder = $('curve');
    if (!holder) return;
    var cols = state.map.grid;
    var narrow = isNarrow();
    var width = Math.max(200, holder.clientWidth || 600);
    var height = narrow ? 150 : 124;
    var top = 22;
    var bottom = narrow ? 34 : 16;
    var n = cols.length;
    var colW = width / n;
    function x(i) { return colW * (i + 0.5); }
    function y(v) { return top + (1 - v) / 2 * (height - top - bottom); }
    var svg = s('svg', {
      width: width, height: height, viewBox: '0 0 ' + width + ' ' + height, role: 'img', 'font-family': FONT,
      'aria-label': 'Sentiment by stage, derived: ' + cols.map(function (c) { return c.stage + ' ' + (c.sentiment == null ? 'no data' : fmtSigned(c.sentiment, 2)); }).join(', '),
    });
    svg.appendChild(s('rect', { x: 0, y: y(1), width: width, height: y(0) - y(1), fill: '#eef5fb' }));
    svg.appendChild(s('rect', { x: 0, y: y(0), width: width, height: y(-1) - y(0), fill: '#fcf1ea' }));
    svg.appendChild(s('line', { x1: 0, x2: width, y1: y(0), y2: y(0), stroke: C.muted, 'stroke-dasharray': '4 4', 'stroke-width': 1 }));
    svg.appendChild(s('text', { x: 6, y: y(1) + 11, 'font-size': 10, fill: C.muted, text: '+1 positive' }));
    svg.appendChild(s('text', { x: 6, y: y(-1) - 4, 'font-size': 10, fill: C.muted, text: '−1 negative' }));
    svg.appendChild(s('text', { x: width - 6, y: 14, 'font-size': 10, fill: C.muted, 'text-anchor': 'end', 'font-style': 'italic', text: 'derived, not measured' }));
    var d = '';
    var pen = false;
    cols.forEach(function (c, i) {
      if (c.sentiment == null) { pen = false; return; }
      d += (pen ? ' L' : ' M') + x(i).toFixed(1) + ' ' + y(c.sentiment).toFixed(1);
      pen = true;
    });
    if (d) svg.appendChild(s('path', { d: d.trim(), fill: 'none', stroke: C.ink, 'stroke-width': 2.5, 'stroke-linejoin': 'round' }));
    cols.forEach(function (c, i) {
      if (narrow) {
        svg.appendChild(s('text', { x: x(i), y: height - 8, 'font-size': 10, fill: C.muted, 'text-anchor': 'middle', text: trim(c.stage, 11) }));
      }
      if (c.sentiment == null) {
        svg.appendChild(s('text', { x: x(i), y: y(0) - 6, 'font-size': 11, fill: C.muted, 'text-anchor': 'middle', text: 'no data' }));
        return;
      }
      var v = c.sentiment;
      var colour = v >= 0 ? C.blue : C.vermillion;
      var g = s('g', { 'data-stage': c.stage, 'data-sentiment': v.toFixed(4) });
      // a filled circle above zero, a square below: the sign reads without colour
      if (v >= 0) g.appendChild(s('circle', { cx: x(i), cy: y(v), r: 5.5, fill: colour, stroke: '#fff', 'stroke-width': 1.5 }));
      else g.appendChild(s('rect', { x: x(i) - 5, y: y(v) - 5, width: 10, height: 10, fill: colour, stroke: '#fff', 'stroke-width': 1.5 }));
      var above = v < 0.75;
      g.appendChild(s('text', {
        x: x(i), y: above ? y(v) - 10 : y(v) + 18, 'font-size': 12, 'font-weight': 700, fill: C.ink, 'text-anchor': 'middle',
        stroke: '#fff', 'stroke-width': 3, 'paint-order': 'stroke', text: fmtSigned(v, 2),
      }));
      svg.appendChild(g);
    });
    holder.replaceChildren(svg);
  }

  // -- the flow diagram ----------------------------------------------------------------------

  /* Order a stage's touchpoints so most flow between them runs one way (greedy: sources
     first), then give each the longest run of strong forward steps before it, at most 3. */
  function subLevels(members, edges) {
    var ids = new Set(members.map(function (v) { return v.id; }));
    var intra = edges.filter(function (e) { return e.source !== e.target && ids.has(e.source) && ids.has(e.target); });
    var left = new Set(ids);
    var order = [];
    while (left.size) {
      var best = null;
      var bestScore = -Infinity;
      members.forEach(function (v) {
        if (!left.has(v.id)) return;
        var score = 0;
        intra.forEach(function (e) {
          if (e.source === v.id && left.has(e.target)) score += e.transitions;
          if (e.target === v.id && left.has(e.source)) score -= e.transitions;
        });
        if (score > bestScore || (score === bestScore && v.n.persons > best.n.persons)) { best = v; bestScore = score; }
      });
      order.push(best.id);
      left.delete(best.id);
    }
    var pos = new Map(order.map(function (id, i) { return [id, i]; }));
    var level = new Map(order.map(function (id) { return [id, 0]; }));
    var strongest = intra.reduce(function (a, e) { return Math.max(a, e.transitions); }, 0);
    order.forEach(function (id) {
      intra.forEach(function (e) {
        var target = members.find(function (v) { return v.id === e.target; });
        var strong = e.transitions >= 0.15 * strongest && e.transitions >= 0.35 * target.n.persons;
        if (e.source === id && pos.get(e.target) > pos.get(id) && strong) {
          level.set(e.target, Math.min(2, Math.max(level.get(e.target), level.get(id) + 1)));
        }
      });
    });
    return level;
  }

  function flowLayout(m, edgeCap, narrow, availWidth) {
    var P = narrow
      ? { boxW: 100, boxH: 42, gapX: 8, layerGap: 38, left: 8, right: 8, top: 14, laneW: 0, bandHead: 20 }
      : { boxW: 132, boxH: 44, gapX: 18, layerGap: 44, left: 126, right: 14, top: 16, laneW: 164, bandHead: 0 };
    var ix = state.ix;
    var nodes = m.nodes.map(function (n) { return { n: n, id: n.id, ins: [], outs: [] }; });
    var byId = new Map(nodes.map(function (v) { return [v.id, v]; }));
    var all = m.edges.filter(function (e) { return byId.has(e.source) && byId.has(e.target); });
    var ranked = all.slice().sort(function (a, b) {
      return b.persons - a.persons || b.transitions - a.transitions || (edgeKey(a) < edgeKey(b) ? -1 : 1);
    });
    var edges = ranked.slice(0, edgeCap).map(function (e) {
      return { e: e, key: edgeKey(e), s: byId.get(e.source), t: byId.get(e.target) };
    });
    edges.forEach(function (x) { x.s.outs.push(x); x.t.ins.push(x); });

    var starts = nodes.filter(function (v) { return v.n.kind === 'start'; });
    var ends = nodes.filter(function (v) { return v.n.kind === 'end' || v.n.kind === 'in_progress'; });
    ends.sort(function (a, b) { return a.n.kind === 'end' ? -1 : b.n.kind === 'end' ? 1 : 0; });
    var cross = nodes.filter(function (v) { return v.n.cross_cutting && starts.indexOf(v) < 0 && ends.indexOf(v) < 0; });
    var middle = nodes.filter(function (v) { return starts.indexOf(v) < 0 && ends.indexOf(v) < 0 && cross.indexOf(v) < 0; });
    // Wide screens give cross-cutting touchpoints a lane on the right, level with their
    // stage; narrow ones a band of their own below the stages.
    var useLane = !narrow && cross.length > 0;
    var laneSpace = useLane ? P.laneW + P.gapX : 0;
    var room = availWidth - P.left - P.right - laneSpace;
    if (narrow) {
      // phones: as many boxes a row as fit at 96 px or more, at most 3
      var fit = Math.max(2, Math.min(3, Math.floor((room - P.gapX) / (96 + P.gapX))));
      P.boxW = Math.min(150, Math.floor((room - (fit + 1) * P.gapX) / fit));
    }
    var perRow = Math.max(2, Math.floor((room - P.gapX) / (P.boxW + P.gapX)));

    // rows: START; per stage its sub-levels (a level wider than the screen wraps onto more
    // rows, biggest touchpoints first); the cross-cutting band when narrow; the ends
    var layers = [];
    var bands = [];
    function addRows(list, band) {
      var chunks = [];
      var sorted = list.slice().sort(function (a, b) { return b.n.persons - a.n.persons || (a.id < b.id ? -1 : 1); });
      for (var i = 0; i < sorted.length; i += perRow) chunks.push(sorted.slice(i, i + perRow));
      if (!chunks.length) chunks.push([]);
      chunks.forEach(function (row) {
        row.forEach(function (v) { v.layer = layers.length; });
        layers.push(row);
        if (band) band.count += 1;
      });
    }
    if (starts.length) addRows(starts, null);
    var stageNames = ix.stages.slice();
    middle.concat(cross).forEach(function (v) { if (stageNames.indexOf(v.n.stage) < 0) stageNames.push(v.n.stage); });
    stageNames.forEach(function (stage) {
      var members = middle.filter(function (v) { return v.n.stage === stage; });
      var band = { stage: stage, first: layers.length, count: 0 };
      if (!members.length) {
        band.empty = true;
        addRows([], band);
      } else {
        var lv = subLevels(members, all);
        var depth = 1 + Math.max.apply(null, members.map(function (v) { return lv.get(v.id); }));
        for (var d = 0; d < depth; d++) {
          addRows(members.filter(function (v) { return lv.get(v.id) === d; }), band);
        }
      }
      bands.push(band);
    });
    if (cross.length && !useLane) {
      var crossBand = { stage: '', cross: true, first: layers.length, count: 0 };
      addRows(cross, crossBand);
      bands.push(crossBand);
    }
    if (ends.length) addRows(ends, null);
    // the lane: each cross-cutting touchpoint level with the first free row of its stage
    if (useLane) {
      var laneTaken = new Set();
      cross.forEach(function (v) {
        var band = bands.find(function (b) { return b.stage === v.n.stage; }) || bands[0];
        var layer = band ? band.first : 0;
        while (laneTaken.has(layer)) layer++;
        while (layer >= layers.length) layers.push([]);
        laneTaken.add(layer);
        v.layer = layer;
        v.cross = true;
      });
    }
    ends.forEach(function (v) { v.end = true; });

    // order within layers: by persons, then a few barycentre sweeps against crossings
    layers.forEach(function (L) { L.sort(function (a, b) { return b.n.persons - a.n.persons || (a.id < b.id ? -1 : 1); }); });
    function centred(v) { return v.order - (layers[v.layer].length - 1) / 2; }
    layers.forEach(function (L) { L.forEach(function (v, i) { v.order = i; }); });
    for (var pass = 0; pass < 4; pass++) {
      var down = pass % 2 === 0;
      var seq = down ? layers.slice(1) : layers.slice(0, -1).reverse();
      seq.forEach(function (L) {
        L.forEach(function (v) {
          var links = down ? v.ins.map(function (x) { return [x.s, x.e.persons]; }) : v.outs.map(function (x) { return [x.t, x.e.persons]; });
          links = links.filter(function (l) { return !l[0].cross && l[0].layer !== v.layer; });
          var weight = links.reduce(function (a, l) { return a + l[1]; }, 0);
          v.bary = weight ? links.reduce(function (a, l) { return a + l[1] * centred(l[0]); }, 0) / weight : centred(v);
        });
        L.sort(function (a, b) { return a.bary - b.bary || b.n.persons - a.n.persons; });
        L.forEach(function (v, i) { v.order = i; });
      });
    }

    // coordinates
    var widest = Math.max(1, Math.max.apply(null, layers.map(function (L) { return L.length; })));
    var mainW = Math.max(widest * P.boxW + (widest - 1) * P.gapX + 2 * P.gapX, room);
    // use spare width for air between boxes, up to a point
    var gap = Math.max(P.gapX, Math.min(56, (mainW - widest * P.boxW) / (widest + 1)));
    var layerY = [];
    var y = P.top;
    var bandOf = new Map();
    bands.forEach(function (b) { for (var i = 0; i < b.count; i++) bandOf.set(b.first + i, b); });
    layers.forEach(function (L, i) {
      var band = bandOf.get(i);
      if (band && band.first === i) y += P.bandHead;
      layerY.push(y);
      y += P.boxH + P.layerGap;
    });
    var height = y - P.layerGap + P.top + 8;
    layers.forEach(function (L, i) {
      var total = L.length * P.boxW + (L.length - 1) * gap;
      var x0 = P.left + (mainW - total) / 2;
      L.forEach(function (v, k) { v.x = x0 + k * (P.boxW + gap); v.y = layerY[i]; v.w = P.boxW; v.h = P.boxH; });
    });
    var laneX = P.left + mainW + P.gapX;
    if (useLane) cross.forEach(function (v) { v.x = laneX + (P.laneW - P.boxW) / 2; v.y = layerY[v.layer]; v.w = P.boxW; v.h = P.boxH; });
    var width = laneX + (useLane ? P.laneW : -P.gapX) + P.right;
    bands.forEach(function (b) {
      b.y0 = layerY[b.first] - P.bandHead - P.layerGap / 2;
      b.y1 = layerY[b.first + b.count - 1] + P.boxH + P.layerGap / 2;
    });

    // line widths: share of all persons; ports spread along the box edges
    var total = Math.max(1, m.coverage.persons);
    edges.forEach(function (x) {
      x.maxX = width - 3;
      x.w = 1.5 + 20 * Math.min(1, x.e.persons / total);
      x.kind = x.s === x.t ? 'self'
        : !x.s.cross !== !x.t.cross ? 'lane'
        : x.t.y > x.s.y + 1 ? 'down' : Math.abs(x.t.y - x.s.y) <= 1 ? 'level' : 'up';
    });
    function spread(list, along, box, pick) {
      list.sort(function (a, b) { return pick(a) - pick(b); });
      var sum = list.reduce(function (a, x) { return a + x.w + 1; }, -1);
      var room = box.w - 14;
      var f = sum > room ? room / sum : 1;
      var cursor = box.x + box.w / 2 - (sum * f) / 2;
      list.forEach(function (x) { x[along] = cursor + (x.w * f) / 2; cursor += (x.w + 1) * f; });
    }
    nodes.forEach(function (v) {
      if (v.x == null) return;
      spread(v.outs.filter(function (x) { return x.kind === 'down'; }), 'sx', v, function (x) { return x.t.x; });
      spread(v.ins.filter(function (x) { return x.kind === 'down'; }), 'tx', v, function (x) { return x.s.x; });
      var side = 0;
      v.outs.concat(v.ins).forEach(function (x) {
        if (x.kind === 'up' || x.kind === 'level') {
          if (x.s === v) x.sOff = side; else x.tOff = side;
          side += 1;
        }
      });
      // lines to and from the cross-cutting lane: spread down the facing side
      var lane = v.outs.concat(v.ins).filter(function (x) { return x.kind === 'lane'; });
      lane.sort(function (a, b) { return (a.s === v ? a.t.y : a.s.y) - (b.s === v ? b.t.y : b.s.y); });
      lane.forEach(function (x, i) {
        var y = v.y + 8 + (v.h - 16) * (lane.length > 1 ? i / (lane.length - 1) : 0.5);
        if (x.s === v) x.sy = y; else x.ty = y;
      });
    });
    return { P: P, nodes: nodes, byId: byId, edges: edges, all: all, bands: bands, layers: layers, cross: useLane ? cross : [], width: width, height: height, laneX: laneX, mainW: mainW };
  }

  function edgePath(x) {
    var sN = x.s;
    var tN = x.t;
    if (x.kind === 'self') {
      var X = sN.x;
      var Y = sN.y + sN.h / 2;
      return 'M' + X + ' ' + (Y - 9) + ' C' + (X - 38) + ' ' + (Y - 26) + ' ' + (X - 38) + ' ' + (Y + 26) + ' ' + X + ' ' + (Y + 9);
    }
    if (x.kind === 'down') {
      var y0 = sN.y + sN.h;
      var y1 = tN.y;
      var dy = Math.max(18, (y1 - y0) / 2);
      return 'M' + x.sx.toFixed(1) + ' ' + y0 + ' C' + x.sx.toFixed(1) + ' ' + (y0 + dy) + ' ' + x.tx.toFixed(1) + ' ' + (y1 - dy) + ' ' + x.tx.toFixed(1) + ' ' + y1;
    }
    if (x.kind === 'lane') {
      // sideways to (or from) the cross-cutting lane on the right
      var fromLane = !!sN.cross;
      var ax = fromLane ? sN.x : sN.x + sN.w;
      var bx = fromLane ? tN.x + tN.w : tN.x;
      var mx = (ax + bx) / 2;
      return 'M' + ax.toFixed(1) + ' ' + x.sy.toFixed(1) + ' C' + mx.toFixed(1) + ' ' + x.sy.toFixed(1) + ' ' + mx.toFixed(1) + ' ' + x.ty.toFixed(1) + ' ' + bx.toFixed(1) + ' ' + x.ty.toFixed(1);
    }
    if (x.kind === 'level') {
      var a = sN.x + sN.w / 2 + (x.sOff || 0) * 4;
      var b = tN.x + tN.w / 2 - (x.tOff || 0) * 4;
      var yb = sN.y + sN.h;
      var bulge = 22 + Math.min(60, Math.abs(b - a) * 0.12);
      return 'M' + a + ' ' + yb + ' C' + a + ' ' + (yb + bulge) + ' ' + b + ' ' + (yb + bulge) + ' ' + b + ' ' + yb;
    }
    // upwards (back to an earlier step): out of the right side and round
    var sx = sN.x + sN.w;
    var sy = sN.y + sN.h / 2 + ((x.sOff || 0) % 5 - 2) * 4;
    var tx = tN.x + tN.w;
    var ty = tN.y + tN.h / 2 + ((x.tOff || 0) % 5 - 2) * 4;
    var out = 26 + Math.min(70, Math.abs(sy - ty) * 0.18);
    out = Math.max(8, Math.min(out, x.maxX - Math.max(sx, tx)));  // stay inside the drawing
    return 'M' + sx + ' ' + sy + ' C' + (sx + out) + ' ' + sy + ' ' + (tx + out) + ' ' + ty + ' ' + tx + ' ' + ty;
  }
  /* A small arrowhead at the end of a path, along its last tangent. */
  function arrowHead(d, size) {
    var n = d.replace(/[MC]/g, ' ').trim().split(/\s+/).map(Number);
    var ex = n[n.length - 2];
    var ey = n[n.length - 1];
    var cx = n[n.length - 4];
    var cy = n[n.length - 3];
    if (Math.abs(cx - ex) + Math.abs(cy - ey) < 0.5) { cx = n[n.length - 6]; cy = n[n.length - 5]; }
    var a = Math.atan2(ey - cy, ex - cx);
    var bx = ex - Math.cos(a) * size;
    var by = ey - Math.sin(a) * size;
    var px = Math.sin(a) * size * 0.55;
    var py = -Math.cos(a) * size * 0.55;
    return 'M' + ex.toFixed(1) + ' ' + ey.toFixed(1) + ' L' + (bx + px).toFixed(1) + ' ' + (by + py).toFixed(1) + ' L' + (bx - px).toFixed(1) + ' ' + (by - py).toFixed(1) + ' Z';
  }
  function bezierMid(d) {
    var nums = d.replace(/[MC]/g, ' ').trim().split(/\s+/).map(Number);
    if (nums.length < 8) return [nums[0], nums[1]];
    var px = [nums[0], nums[2], nums[4], nums[6]];
    var py = [nums[1], nums[3], nums[5], nums[7]];
    function at(p) { return 0.125 * p[0] + 0.375 * p[1] + 0.375 * p[2] + 0.125 * p[3]; }
    return [at(px), at(py)];
  }

  function nodeStyle(v) {
    var kind = v.n.kind;
    if (kind === 'start') return { fill: '#2b3138', stroke: '#2b3138', text: '#ffffff', sub: '#d5dbe2', bar: '#ffffff' };
    if (kind === 'end') return { fill: '#fcebe1', stroke: C.vermillion, text: C.ink, sub: '#6b3a1c', bar: C.vermillion };
    if (kind === 'in_progress') return { fill: '#e8f4fb', stroke: C.sky, text: C.ink, sub: '#285c7a', bar: C.sky };
    if (state.ix.isGoal(v.id)) return { fill: '#e3f3ed', stroke: C.green, text: C.ink, sub: '#1d5c49', bar: C.green, width: 3 };
    if (v.n.cross_cutting) return { fill: '#f9eaf2', stroke: C.purple, text: C.ink, sub: '#7a3e60', bar: C.purple };
    if (kind === 'other') return { fill: '#f3f5f8', stroke: '#7d8793', text: C.ink, sub: C.muted, bar: '#7d8793', dash: '5 3' };
    return { fill: '#ffffff', stroke: C.blue, text: C.ink, sub: C.muted, bar: C.blue };
  }

  function nodeAria(n) {
    var parts = [label(n.id)];
    if (state.ix.isGoal(n.id)) parts.push('goal');
    if (n.kind === 'other') parts.push('bucket of smaller touchpoints');
    if (n.cross_cutting) parts.push('cross-cutting');
    if (n.stage) parts.push(n.stage + ' stage');
    parts.push(plural(n.persons, 'person'));
    if (n.kind === 'touchpoint' || n.kind === 'other') parts.push(fmtPct(n.reach) + ' reach');
    return parts.join(', ');
  }
  function edgeAria(e) {
    return label(e.source) + ' to ' + label(e.target) + ': ' + plural(e.persons, 'person') + ', ' + plural(e.transitions, 'transition') +
      (e.median_seconds != null ? ', median ' + fmtDur(e.median_seconds) : '');
  }

  var flow = null;

  function renderFlow() {
    var m = state.map;
    var holder = $('flow');
    var narrow = isNarrow();
    var avail = Math.max(300, holder.clientWidth - 2);
    var L = flowLayout(m, state.edgeCap, narrow, avail);
    flow = L;
    var ix = state.ix;
    var P = L.P;
    var svg = s('svg', {
      class: 'flow-svg', id: 'flow-svg', width: L.width, height: L.height, viewBox: '0 0 ' + L.width + ' ' + L.height,
      role: 'group', 'font-family': FONT,
      'aria-label': 'Touchpoint flow: ' + plural(m.nodes.length, 'node') + ', ' + L.edges.length + ' of ' + plural(L.all.length, 'transition line') + ' drawn',
    });
    svg.appendChild(s('title', { text: 'Touchpoint flow' }));
    svg.appendChild(s('rect', { x: 0, y: 0, width: L.width, height: L.height, fill: '#fbfcfd' }));
    // stage bands
    var bandG = s('g', { class: 'bands', 'aria-hidden': 'true' });
    L.bands.forEach(function (b, i) {
      var phase = ix.phaseOf.get(b.stage);
      var fill = b.cross ? '#fbf3f8' : phase === 'before_purchase' ? '#eef4fa' : phase === 'during_purchase' ? '#ecf6f2' : phase === 'after_purchase' ? '#fcf6ec' : '#f3f5f8';
      bandG.appendChild(s('rect', { x: 0, y: b.y0, width: L.width, height: b.y1 - b.y0, fill: fill, opacity: i % 2 ? 0.65 : 1 }));
      var name = b.cross ? 'Cross-cutting' : b.stage ? cap(b.stage) : 'No stage';
      if (b.cross) phase = null;
      if (narrow) {
        bandG.appendChild(s('text', { x: 8, y: b.y0 + P.layerGap / 2 + 12, 'font-size': 11, 'font-weight': 700, fill: b.cross ? '#7a3e60' : C.muted, text: name.toUpperCase() + (phase ? ' · ' + PHASES[phase].toLowerCase() : b.cross ? ' · any stage' : '') }));
      } else {
        bandG.appendChild(s('text', { x: 12, y: b.y0 + P.layerGap / 2 + 16, 'font-size': 13, 'font-weight': 700, fill: C.ink, text: name }));
        if (phase) bandG.appendChild(s('text', { x: 12, y: b.y0 + P.layerGap / 2 + 32, 'font-size': 10.5, fill: C.muted, text: PHASES[phase] }));
      }
      if (b.empty) bandG.appendChild(s('text', { x: (P.left + L.laneX) / 2, y: (b.y0 + b.y1) / 2 + (narrow ? 10 : 4), 'font-size': 11, fill: C.muted, 'text-anchor': 'middle', text: 'no steps in this stage' }));
    });
    svg.appendChild(bandG);
    if (L.cross.length) {
      svg.appendChild(s('g', { 'aria-hidden': 'true' },
        s('rect', { x: L.laneX - 4, y: 4, width: P.laneW + 8, height: L.height - 8, rx: 8, fill: '#fbf3f8', stroke: '#e5c3d7', 'stroke-dasharray': '4 3' }),
        s('text', { x: L.laneX + P.laneW / 2, y: 18, 'font-size': 11, 'font-weight': 700, fill: '#7a3e60', 'text-anchor': 'middle', text: 'Cross-cutting' }),
        s('text', { x: L.laneX + P.laneW / 2, y: 31, 'font-size': 10, fill: '#7a3e60', 'text-anchor': 'middle', text: 'any stage' })));
    }
    // lines
    var edgeG = s('g', { class: 'edges' });
    var labelG = s('g', { class: 'elabels', 'aria-hidden': 'true' });
    var labelled = L.edges.slice(0, narrow ? 6 : 12);
    // edge labels never cover a box or another label
    var taken = L.nodes.filter(function (v) { return v.x != null; }).map(function (v) { return [v.x - 2, v.y - 2, v.x + v.w + 2, v.y + v.h + 2]; });
    var compare = comparing();
    L.edges.forEach(function (x) {
      var e = x.e;
      var d = edgePath(x);
      var colour = timeColor(e.median_seconds);
      var dashed = x.kind === 'up' || x.kind === 'self' || x.kind === 'level';
      var arrow = x.kind !== 'down';
      var g = s('g', { class: 'edge', tabindex: '-1', role: 'button', 'data-edge': x.key, 'aria-label': edgeAria(e) },
        s('title', { text: edgeAria(e) }),
        s('path', { class: 'hit', d: d, fill: 'none', stroke: '#000', 'stroke-opacity': 0, 'stroke-width': Math.max(12, x.w + 6) }),
        s('path', {
          class: 'vis', d: d, fill: 'none', stroke: colour, 'stroke-width': x.w.toFixed(1), 'stroke-opacity': 0.62,
          'stroke-linecap': 'butt', 'stroke-dasharray': dashed ? Math.max(7, 1.6 * x.w).toFixed(0) + ' ' + Math.max(4, x.w).toFixed(0) : null,
        }),
        arrow ? s('path', { class: 'vis', d: arrowHead(d, Math.min(13, 7 + x.w * 0.35)), fill: colour, 'fill-opacity': 0.9, stroke: 'none' }) : null);
      edgeG.appendChild(g);
      x.g = g;
      var isNew = compare && ix.newEdges.has(x.key);
      if (labelled.indexOf(x) >= 0 || isNew) {
        var mid = bezierMid(d);
        var text = (isNew ? 'new · ' : '') + fmtInt(e.persons);
        var half = text.length * 3.4 + 4;
        var rect = [mid[0] - half, mid[1] - 9, mid[0] + half, mid[1] + 7];
        if (taken.some(function (r) { return rect[0] < r[2] && r[0] < rect[2] && rect[1] < r[3] && r[1] < rect[3]; })) return;
        taken.push(rect);
        var lg = s('g', { class: 'elabel', 'data-for': x.key });
        if (isNew) {
          lg.appendChild(s('rect', { x: mid[0] - text.length * 3.3 - 4, y: mid[1] - 9, width: text.length * 6.6 + 8, height: 15, rx: 3, fill: C.yellow, stroke: '#b3a600' }));
        }
        lg.appendChild(s('text', {
          x: mid[0], y: mid[1] + 3, 'font-size': 11, 'font-weight': 600, 'text-anchor': 'middle', fill: C.ink,
          stroke: isNew ? null : '#fbfcfd', 'stroke-width': isNew ? null : 3, 'paint-order': 'stroke', text: text,
        }));
        labelG.appendChild(lg);
        x.lg = lg;
      }
    });
    svg.appendChild(edgeG);
    svg.appendChild(labelG);
    // nodes
    var nodeG = s('g', { class: 'nodes' });
    var maxChars = Math.floor((P.boxW - 12) / 5.5);
    L.nodes.forEach(function (v) {
      if (v.x == null) return;
      var n = v.n;
      var st = nodeStyle(v);
      var g = s('g', {
        class: 'node', tabindex: '0', role: 'button', 'data-node': n.id, 'data-persons': String(n.persons),
        transform: 'translate(' + v.x.toFixed(1) + ' ' + v.y.toFixed(1) + ')', 'aria-label': nodeAria(n),
      });
      g.appendChild(s('title', { text: nodeAria(n) }));
      g.appendChild(s('rect', { class: 'ring', x: -5, y: -5, width: v.w + 10, height: v.h + 10, rx: 10, fill: 'none', stroke: '#111', 'stroke-width': 3 }));
      g.appendChild(s('rect', { class: 'box', width: v.w, height: v.h, rx: 7, fill: st.fill, stroke: st.stroke, 'stroke-width': st.width || 1.6, 'stroke-dasharray': st.dash || null }));
      var reach = n.kind === 'touchpoint' || n.kind === 'other' ? n.reach : n.persons / Math.max(1, m.coverage.persons);
      g.appendChild(s('rect', { x: 1, y: v.h - 5, width: Math.max(0, Math.min(1, reach)) * (v.w - 2), height: 4, fill: st.bar, opacity: 0.85 }));
      var name = (ix.isGoal(n.id) ? '★ ' : '') + label(n.id);
      g.appendChild(s('text', { class: 'name', x: narrow ? 6 : 8, y: 17, 'font-size': narrow ? 10.5 : 12, 'font-weight': 700, fill: st.text, text: trim(name, maxChars) }));
      var sub = fmtInt(n.persons) + (n.kind === 'touchpoint' || n.kind === 'other' ? ' · ' + fmtPct(n.reach) : ' persons');
      g.appendChild(s('text', { class: 'persons', x: narrow ? 6 : 8, y: 33, 'font-size': narrow ? 10 : 11, fill: st.sub, text: sub }));
      var dd = compare ? ix.delta.get(n.id) : null;
      if (dd && (n.kind === 'touchpoint' || n.kind === 'other')) {
        var change = dd.reach_now - dd.reach_before;
        if (Math.abs(change) >= 0.005) {
          g.appendChild(s('text', {
            x: v.w - 6, y: 33, 'font-size': 10, 'font-weight': 700, 'text-anchor': 'end',
            fill: (change > 0) === (ix.good(n.id) > 0) ? C.blue : C.vermillion, text: (change > 0 ? '▲' : '▼') + Math.abs(change * 100).toFixed(0),
          }));
        }
      }
      nodeG.appendChild(g);
      v.g = g;
    });
    svg.appendChild(nodeG);
    holder.replaceChildren(svg);
    fitNames(svg, P.boxW - (narrow ? 10 : 14));
    svg.addEventListener('click', onFlowClick);
    svg.addEventListener('keydown', onFlowKey);
    $('flow-note').textContent = (L.all.length > L.edges.length
      ? 'Showing the ' + L.edges.length + ' largest of ' + fmtInt(L.all.length) + ' transition lines (by persons); the table below lists them.'
      : 'All ' + fmtInt(L.all.length) + ' transition lines are drawn.') +
      (L.width > holder.clientWidth + 4 ? ' Scroll sideways for the whole flow.' : '');
    applySelection(false);
    renderFlowTable(L);
  }

  /* Shorten touchpoint names that do not fit their box, measured in the browser's font. */
  function fitNames(svg, room) {
    svg.querySelectorAll('text.name').forEach(function (t) {
      var full = t.textContent;
      if (t.getComputedTextLength() <= room) return;
      var lo = 1;
      var hi = full.length;
      while (lo < hi) {
        var mid = Math.ceil((lo + hi) / 2);
        t.textContent = full.slice(0, mid) + '…';
        if (t.getComputedTextLength() <= room) lo = mid; else hi = mid - 1;
      }
      t.textContent = full.slice(0, lo) + '…';
    });
  }

  function renderLegend() {
    var legend = $('flow-legend');
    var ramp = s('svg', { width: 150, height: 28, 'font-family': FONT, 'aria-hidden': 'true' });
    var grad = s('linearGradient', { id: 'time-ramp', x1: 0, x2: 1, y1: 0, y2: 0 });
    TIME_RAMP.forEach(function (c, i) { grad.appendChild(s('stop', { offset: (i / (TIME_RAMP.length - 1) * 100) + '%', 'stop-color': c })); });
    ramp.appendChild(s('defs', null, grad));
    ramp.appendChild(s('rect', { x: 0, y: 2, width: 150, height: 9, rx: 2, fill: 'url(#time-ramp)' }));
    [[60, '1 min'], [3600, '1 h'], [86400, '1 d'], [TIME_MAX, '30 d']].forEach(function (t, i, arr) {
      var pos = (Math.log(t[0]) - Math.log(TIME_MIN)) / (Math.log(TIME_MAX) - Math.log(TIME_MIN)) * 150;
      ramp.appendChild(s('text', { x: Math.min(148, Math.max(2, pos)), y: 25, 'font-size': 9.5, fill: C.muted, 'text-anchor': i === 0 ? 'start' : i === arr.length - 1 ? 'end' : 'middle', text: t[1] }));
    });
    var widths = s('svg', { width: 92, height: 26, 'aria-hidden': 'true' });
    [[0.1, 10], [0.5, 40], [1, 76]].forEach(function (w) {
      widths.appendChild(s('line', { x1: w[1] - 9, x2: w[1] + 9, y1: 13, y2: 13, stroke: C.blue, 'stroke-opacity': 0.6, 'stroke-width': 1.5 + 20 * w[0] }));
    });
    function swatch(fill, stroke, dash) {
      return s('svg', { width: 20, height: 14, 'aria-hidden': 'true' }, s('rect', { x: 1, y: 1, width: 18, height: 12, rx: 3, fill: fill, stroke: stroke, 'stroke-width': 1.6, 'stroke-dasharray': dash || null }));
    }
    var dash = s('svg', { width: 30, height: 14, 'aria-hidden': 'true' }, s('line', { x1: 1, x2: 29, y1: 7, y2: 7, stroke: C.muted, 'stroke-width': 2, 'stroke-dasharray': '7 4' }));
    fill(legend, [
      h('span', { class: 'item' }, 'Median time: fast', ramp, 'slow; grey: start, end'),
      h('span', { class: 'item' }, 'Thickness: 10%, 50%, 100% of persons', widths),
      h('span', { class: 'item' }, swatch('#2b3138', '#2b3138'), 'start'),
      h('span', { class: 'item' }, swatch('#e3f3ed', C.green), '★ goal'),
      h('span', { class: 'item' }, swatch('#fcebe1', C.vermillion), 'ended (drop-off unless after the goal)'),
      h('span', { class: 'item' }, swatch('#e8f4fb', C.sky), 'in progress'),
      h('span', { class: 'item' }, swatch('#f3f5f8', '#7d8793', '5 3'), 'other: smaller touchpoints of a stage'),
      h('span', { class: 'item' }, swatch('#f9eaf2', C.purple), 'cross-cutting'),
      h('span', { class: 'item' }, dash, 'back, sideways or repeat'),
      comparing() ? h('span', { class: 'item' }, h('b', { text: '▲▼' }), 'reach change vs the previous period, in points (blue: better, vermillion: worse); ', h('span', { class: 'tag new', text: 'new' }), 'a transition new this period') : null]);
  }

  function renderFlowTable(L) {
    var compare = comparing();
    var rows = L.edges.map(function (x) {
      var e = x.e;
      return h('tr', { 'data-edge': x.key },
        h('td', null, h('button', { type: 'button', class: 'link', 'data-select-edge': x.key, text: label(e.source) + ' → ' + label(e.target) }),
          compare && state.ix.newEdges.has(x.key) ? [' ', h('span', { class: 'tag new', text: 'new' })] : null),
        h('td', { class: 'n', text: fmtInt(e.persons) }),
        h('td', { class: 'n', text: fmtInt(e.transitions) }),
        h('td', { class: 'n', text: fmtPct(e.p_next) }),
        h('td', { class: 'n', text: fmtDur(e.median_seconds) }),
        h('td', { class: 'n', text: fmtPct(e.goal_after_rate) }));
    });
    $('flow-table').replaceChildren(h('table', null,
      h('caption', { class: 'sr-only', text: 'Transitions drawn in the flow' }),
      h('thead', null, h('tr', null, h('th', { text: 'Transition' }), h('th', { class: 'n', text: 'Persons' }), h('th', { class: 'n', text: 'Transitions' }),
        h('th', { class: 'n', text: 'Share of exits' }), h('th', { class: 'n', text: 'Median time' }), h('th', { class: 'n', text: 'Goal after' }))),
      h('tbody', null, rows)));
  }

  // selection and keyboard

  function select(sel, focus) {
    state.selected = sel;
    applySelection(focus);
  }
  function applySelection(focus) {
    var svg = $('flow-svg');
    if (!svg || !flow) return;
    var sel = state.selected;
    if (sel && sel.type === 'node' && !flow.byId.has(sel.id)) sel = state.selected = null;
    if (sel && sel.type === 'edge' && !flow.edges.some(function (x) { return x.key === sel.key; })) {
      if (!state.ix.edges.has(sel.key)) sel = state.selected = null;
    }
    svg.classList.toggle('has-sel', !!sel);
    flow.nodes.forEach(function (v) { if (v.g) { v.g.classList.remove('sel'); v.g.classList.remove('rel'); v.g.removeAttribute('aria-pressed'); } });
    flow.edges.forEach(function (x) { x.g.classList.remove('sel'); x.g.classList.remove('rel'); if (x.lg) x.lg.classList.remove('rel'); });
    var target = null;
    if (sel && sel.type === 'node') {
      var v = flow.byId.get(sel.id);
      if (v.g) { v.g.classList.add('sel', 'rel'); v.g.setAttribute('aria-pressed', 'true'); target = v.g; }
      v.ins.concat(v.outs).forEach(function (x) {
        x.g.classList.add('rel'); if (x.lg) x.lg.classList.add('rel');
        if (x.s.g) x.s.g.classList.add('rel');
        if (x.t.g) x.t.g.classList.add('rel');
      });
    } else if (sel && sel.type === 'edge') {
      flow.edges.forEach(function (x) {
        if (x.key !== sel.key) return;
        x.g.classList.add('sel', 'rel'); if (x.lg) x.lg.classList.add('rel');
        if (x.s.g) x.s.g.classList.add('rel');
        if (x.t.g) x.t.g.classList.add('rel');
        target = x.g;
      });
    }
    renderDetails();
    if (focus && target) target.focus();
  }

  function onFlowClick(ev) {
    var node = ev.target.closest('.node');
    var edge = ev.target.closest('.edge');
    if (node) select({ type: 'node', id: node.getAttribute('data-node') }, false);
    else if (edge) select({ type: 'edge', key: edge.getAttribute('data-edge') }, false);
    else select(null, false);
  }

  function neighbour(v, key) {
    if (key === 'ArrowLeft' || key === 'ArrowRight') {
      var row = v.cross ? flow.cross : flow.layers[v.layer];
      var i = row.indexOf(v) + (key === 'ArrowRight' ? 1 : -1);
      if (i >= 0 && i < row.length) return row[i];
      if (key === 'ArrowRight' && !v.cross) {
        return flow.cross.find(function (c) { return c.layer === v.layer; }) || null;
      }
      if (key === 'ArrowLeft' && v.cross) {
        var layer = flow.layers[v.layer] || [];
        return layer[layer.length - 1] || null;
      }
      return null;
    }
    var list = key === 'ArrowDown' ? v.outs : v.ins;
    var best = null;
    list.forEach(function (x) {
      var other = key === 'ArrowDown' ? x.t : x.s;
      if (other !== v && (!best || x.e.persons > best[1])) best = [other, x.e.persons];
    });
    if (best) return best[0];
    // no line that way: the nearest touchpoint in the next layer up or down
    var step = key === 'ArrowDown' ? 1 : -1;
    for (var l = v.layer + step; l >= 0 && l < flow.layers.length; l += step) {
      if (flow.layers[l].length) return flow.layers[l][0];
    }
    return null;
  }

  function onFlowKey(ev) {
    var node = ev.target.closest('.node');
    var edge = ev.target.closest('.edge');
    if (ev.key === 'Enter' || ev.key === ' ') {
      if (node) select({ type: 'node', id: node.getAttribute('data-node') }, false);
      else if (edge) select({ type: 'edge', key: edge.getAttribute('data-edge') }, false);
      ev.preventDefault();
    } else if (ev.key === 'Escape') {
      select(null, false);
    } else if (node && /^Arrow/.test(ev.key)) {
      var next = neighbour(flow.byId.get(node.getAttribute('data-node')), ev.key);
      if (next && next.g) next.g.focus();
      ev.preventDefault();
    }
  }

  function dl(pairs) {
    return h('dl', null, pairs.filter(Boolean).map(function (p) {
      return [h('dt', { text: p[0] }), h('dd', { 'data-field': p[2] || null }, p[1])];
    }));
  }
  function edgeButton(x, towards) {
    var e = x.e || x;
    var other = towards === 'out' ? e.target : e.source;
    return h('li', null, h('button', { type: 'button', 'data-select-edge': edgeKey(e) },
      h('span', { text: (towards === 'out' ? '→ ' : '← ') + label(other) }),
      h('span', { class: 'num', text: fmtInt(e.persons) + (towards === 'out' ? ' · ' + fmtPct(e.p_next) : '') })));
  }

  function detailsHead(title, key, tags) {
    return h('div', { class: 'dhead' },
      h('h3', { 'data-details': key, text: title }), tags,
      h('button', { type: 'button', class: 'close', 'aria-label': 'Clear the selection', 'data-clear': '1', text: '✕' }));
  }

  function renderDetails() {
    var box = $('flow-details');
    var sel = state.selected;
    var ix = state.ix;
    var compare = comparing();
    box.classList.toggle('open', !!sel);
    if (!sel) {
      fill(box, h('div', { class: 'dhead' }, h('h3', { text: 'Select a touchpoint' }),
        h('span', { class: 'note', text: isNarrow() ? 'Tap a box or a line to see its numbers here.'
          : 'Click a box or a line, or Tab to a touchpoint and press Enter, to see its numbers here. Arrow keys move between touchpoints; Escape clears.' })));
      return;
    }
    if (sel.type === 'node') {
      var n = ix.nodes.get(sel.id);
      var d = compare ? ix.delta.get(n.id) : null;
      var ins = state.map.edges.filter(function (e) { return e.target === n.id && e.source !== n.id; }).sort(function (a, b) { return b.persons - a.persons; });
      var outs = state.map.edges.filter(function (e) { return e.source === n.id && e.target !== n.id; }).sort(function (a, b) { return b.persons - a.persons; });
      var self = ix.edges.get(n.id + '\u2192' + n.id);
      var touch = n.kind === 'touchpoint' || n.kind === 'other';
      fill(box, [
        detailsHead((ix.isGoal(n.id) ? '★ ' : '') + cap(label(n.id)), n.id, [
          n.stage ? h('span', { class: 'tag kind', text: n.stage }) : null,
          ix.isGoal(n.id) ? h('span', { class: 'tag goal', text: 'goal' }) : null,
          n.cross_cutting ? h('span', { class: 'tag cross', text: 'cross-cutting' }) : null]),
        h('div', { class: 'cols' },
          dl([
            ['Persons', [fmtInt(n.persons), d ? [' ', delta(d.persons_now, d.persons_before, { good: ix.good(n.id) })] : null], 'persons'],
            touch ? ['Reach', [fmtPct(n.reach), d ? [' ', delta(d.reach_now, d.reach_before, { pts: true, good: ix.good(n.id) })] : null], 'reach'] : null,
            ['Steps', fmtInt(n.steps), 'steps'],
            touch ? ['Events', fmtInt(n.events), 'events'] : null,
            touch ? ['Came back or repeated', fmtPct(n.repeat_rate), 'repeat'] : null,
            self ? ['Within the bucket', plural(self.transitions, 'step'), 'self'] : null,
          ]),
          ins.length ? h('div', null, h('h4', { text: 'Came from (persons)' }), h('ul', null, ins.slice(0, 6).map(function (e) { return edgeButton(e, 'in'); }))) : null,
          outs.length ? h('div', null, h('h4', { text: 'Went next (persons · share of exits)' }), h('ul', null, outs.slice(0, 6).map(function (e) { return edgeButton(e, 'out'); }))) : null)]);
      return;
    }
    var e = ix.edges.get(sel.key);
    var isNew = compare && ix.newEdges.has(sel.key);
    var drawn = flow && flow.edges.some(function (x) { return x.key === sel.key; });
    fill(box, [
      detailsHead(cap(label(e.source)) + ' → ' + label(e.target), sel.key, isNew ? h('span', { class: 'tag new', text: 'new this period' }) : null),
      drawn ? null : h('p', { class: 'note', text: 'Not drawn: raise “Lines drawn” to see it.' }),
      h('div', { class: 'cols' },
        dl([
          ['Persons', fmtInt(e.persons), 'persons'],
          ['Transitions', fmtInt(e.transitions), 'transitions'],
          ['Share of exits from ' + label(e.source), fmtPct(e.p_next), 'p_next'],
        ]),
        dl([
          ['Median time', fmtDur(e.median_seconds), 'median'],
          ['90th percentile time', fmtDur(e.p90_seconds), 'p90'],
          ['Reached the goal after', fmtInt(e.goal_after_persons) + ' (' + fmtPct(e.goal_after_rate) + ')', 'goal_after'],
        ]),
        h('div', null, h('h4', { text: 'Touchpoints' }), h('ul', null,
          h('li', null, h('button', { type: 'button', 'data-select-node': e.source, text: 'from ' + label(e.source) })),
          h('li', null, h('button', { type: 'button', 'data-select-node': e.target, text: 'to ' + label(e.target) })))))]);
  }

  document.addEventListener('click', function (ev) {
    var button = ev.target.closest ? ev.target.closest('[data-select-edge],[data-select-node],[data-clear]') : null;
    if (!button) return;
    if (button.hasAttribute('data-clear')) {
      var was = state.selected;
      select(null, false);
      var back = was && was.type === 'node' ? document.querySelector('.node[data-node="' + CSS.escape(was.id) + '"]') : null;
      if (back) back.focus();
      return;
    }
    var edge = button.getAttribute('data-select-edge');
    if (edge) select({ type: 'edge', key: edge }, true);
    else select({ type: 'node', id: button.getAttribute('data-select-node') }, true);
    if (!document.activeElement || document.activeElement === document.body) $('flow-details').focus();
  });

  // -- funnel ----------------------------------------------------------------------------------

  function renderFunnel() {
    var m = state.map;
    var holder = $('funnel');
    var rows = m.stages;
    if (!rows.length) { holder.replaceChildren(none('No stages.')); return; }
    var narrow = isNarrow();
    var width = Math.max(280, holder.clientWidth || 600);
    var labelW = narrow ? 0 : 130;
    var barArea = width - labelW - 8;
    var maxP = Math.max(1, Math.max.apply(null, rows.map(function (r) { return r.persons; })));
    var barH = 26;
    var headH = narrow ? 18 : 0;
    var gapH = narrow ? 52 : 46;
    var y = 6;
    var svg = s('svg', { width: width, role: 'img', 'font-family': FONT });
    var desc = [];
    var compare = comparing();
    rows.forEach(function (r, i) {
      var w = Math.max(2, barArea * r.persons / maxP);
      var x = labelW + (barArea - w) / 2;
      if (narrow) {
        svg.appendChild(s('text', { x: 0, y: y + 12, 'font-size': 12.5, 'font-weight': 700, fill: C.ink, text: cap(r.stage) }));
        y += headH;
      } else {
        svg.appendChild(s('text', { x: 0, y: y + barH / 2 + 5, 'font-size': 13, 'font-weight': 700, fill: C.ink, text: cap(r.stage) }));
      }
      var g = s('g', { 'data-stage': r.stage });
      g.appendChild(s('rect', { x: x, y: y, width: w, height: barH, rx: 4, fill: C.blue }));
      var inside = w > 120;
      g.appendChild(s('text', {
        x: inside ? x + w / 2 : x + w + 6, y: y + barH / 2 + 4.5, 'font-size': 12.5, 'font-weight': 700,
        'text-anchor': inside ? 'middle' : 'start', fill: inside ? '#fff' : C.ink, class: 'funnel-persons', text: fmtInt(r.persons) + ' persons',
      }));
      svg.appendChild(g);
      desc.push(r.stage + ' ' + fmtInt(r.persons) + ' persons');
      y += barH;
      if (i < rows.length - 1) {
        var next = rows[i + 1];
        var nw = Math.max(2, barArea * next.persons / maxP);
        var nx = labelW + (barArea - nw) / 2;
        var ny = y + gapH + (narrow ? headH : 0);
        svg.appendChild(s('path', { d: 'M' + x + ' ' + y + ' L' + (x + w) + ' ' + y + ' L' + (nx + nw) + ' ' + ny + ' L' + nx + ' ' + ny + ' Z', fill: '#e3eef7', 'aria-hidden': 'true' }));
        var line1 = (r.conversion_rate == null ? '–' : fmtPct(r.conversion_rate)) + ' go on (' + fmtInt(r.converted_persons) + ')' +
          (r.median_seconds_to_next != null ? ' · median ' + fmtDur(r.median_seconds_to_next) + ', p90 ' + fmtDur(r.p90_seconds_to_next) : '');
        var shift = compare ? state.ix.shift.get(r.stage) : null;
        if (shift && shift.rate_before != null && r.conversion_rate != null) {
          line1 += ' · was ' + fmtPct(shift.rate_before) + (shift.significant ? ' (significant)' : '');
        }
        var line2 = '✕ ' + fmtPct(r.dropoff_rate) + ' ended here (' + fmtInt(r.dropped_persons) + ')';
        var tx = narrow ? 0 : labelW + barArea / 2;
        var anchor = narrow ? 'start' : 'middle';
        svg.appendChild(s('text', { x: tx, y: y + 18, 'font-size': 12, 'text-anchor': anchor, fill: C.ink, stroke: '#fff', 'stroke-width': 3, 'paint-order': 'stroke', 'data-conv': r.stage, text: line1 }));
        svg.appendChild(s('text', { x: tx, y: y + 34, 'font-size': 11.5, 'text-anchor': anchor, fill: '#a44200', stroke: '#fff', 'stroke-width': 3, 'paint-order': 'stroke', text: line2 }));
        desc.push(line1 + '; ' + line2);
        y += gapH;
      } else {
        var last = '✕ ' + fmtPct(r.dropoff_rate) + ' ended here (' + fmtInt(r.dropped_persons) + ')';
        svg.appendChild(s('text', { x: narrow ? 0 : labelW + barArea / 2, y: y + 18, 'font-size': 11.5, 'text-anchor': narrow ? 'start' : 'middle', fill: '#a44200', text: last }));
        y += 28;
      }
    });
    svg.setAttribute('height', String(y + 4));
    svg.setAttribute('viewBox', '0 0 ' + width + ' ' + (y + 4));
    svg.setAttribute('aria-label', 'Stage funnel: ' + desc.join('; '));
    holder.replaceChildren(svg);
    var back = $('backward');
    if (m.backward_moves.length) {
      back.replaceChildren(h('span', { text: 'Going back a stage:' }), h('ul', null, m.backward_moves.slice(0, 8).map(function (b) {
        return h('li', { text: b.from_stage + ' → ' + b.to_stage + ': ' + plural(b.persons, 'person') + ' (' + plural(b.transitions, 'time') + ')' });
      })));
    } else back.replaceChildren();
  }

  // -- paths and drivers ------------------------------------------------------------------------

  function pathSteps(steps) {
    var ix = state.ix;
    var out = [];
    steps.forEach(function (step, i) {
      if (i) out.push(h('span', { class: 'sep', 'aria-hidden': 'true', text: '›' }));
      out.push(h('span', { class: 'step' + (ix.isGoal(step) ? ' goal' : ''), text: step === '…' ? '…' : label(step) }));
    });
    return h('div', { class: 'path', 'aria-label': steps.map(label).join(', then ') }, out);
  }

  function renderPaths() {
    var m = state.map;
    var holder = $('paths');
    var kids = [];
    if (m.path_to_goal) {
      kids.push(h('div', { class: 'goalpath' },
        h('p', null, h('b', { text: 'Most common path to the goal' }), ' · ' + plural(m.path_to_goal.journeys, 'journey') + ' (' + fmtPct(m.path_to_goal.coverage) + ' of all)'),
        pathSteps(m.path_to_goal.steps)));
    }
    if (!m.paths.length) {
      kids.push(none('No journeys yet.'));
    } else {
      kids.push(h('div', { class: 'table-scroll' }, h('table', { id: 'paths-table' },
        h('thead', null, h('tr', null, h('th', { class: 'n', text: '#' }), h('th', { text: 'Path' }), h('th', { class: 'n', text: 'Journeys' }), h('th', { class: 'n', text: 'Reach goal' }))),
        h('tbody', null, m.paths.map(function (p, i) {
          return h('tr', { class: p.goal_journeys ? '' : '' },
            h('td', { class: 'n', text: String(i + 1) }),
            h('td', null, pathSteps(p.steps)),
            h('td', { class: 'n' }, fmtInt(p.journeys), h('div', { class: 'note', text: fmtPct(p.coverage) })),
            h('td', { class: 'n', text: fmtPct(p.goal_rate) }));
        })))));
    }
    fill(holder, kids);
  }

  function forest(d, lo, hi) {
    var W = 150;
    var H = 22;
    function x(v) { return 6 + (Math.log(Math.max(lo, Math.min(hi, v))) - Math.log(lo)) / (Math.log(hi) - Math.log(lo)) * (W - 12); }
    var sig = d.ci_low > 1 || d.ci_high < 1;
    var colour = d.ci_low > 1 ? C.blue : d.ci_high < 1 ? C.vermillion : C.muted;
    return s('svg', { class: 'forest', width: W, height: H, 'aria-hidden': 'true' },
      s('line', { x1: x(1), x2: x(1), y1: 1, y2: H - 1, stroke: C.ink, 'stroke-dasharray': '2 2' }),
      s('line', { x1: x(d.ci_low), x2: x(d.ci_high), y1: H / 2, y2: H / 2, stroke: colour, 'stroke-width': 2 }),
      sig
        ? s('rect', { x: x(d.odds_ratio) - 4.5, y: H / 2 - 4.5, width: 9, height: 9, fill: colour })
        : s('circle', { cx: x(d.odds_ratio), cy: H / 2, r: 4.5, fill: '#fff', stroke: colour, 'stroke-width': 2 }));
  }

  function renderDrivers() {
    var m = state.map;
    var holder = $('drivers');
    if (!m.drivers.length) {
      holder.replaceChildren(none('No drivers yet: a touchpoint needs at least ' + m.settings.min_support + ' persons before the goal to be compared.'));
      return;
    }
    var list = m.drivers;
    var lo = Math.min.apply(null, list.map(function (d) { return d.ci_low; }).concat([0.5]));
    var hi = Math.max.apply(null, list.map(function (d) { return d.ci_high; }).concat([2]));
    lo = Math.max(lo, 0.01);
    hi = Math.min(hi, 1000);
    var shown = 12;
    function row(d) {
      var verdict = d.ci_low > 1 ? 'more likely' : d.ci_high < 1 ? 'less likely' : 'no clear effect';
      return h('tr', { 'data-driver': d.touchpoint },
        h('td', null, label(d.touchpoint), d.cross_cutting ? [' ', h('span', { class: 'tag cross', text: 'cross-cutting' })] : null,
          h('div', { class: 'note', text: verdict })),
        h('td', { class: 'n' }, fmtPct(d.goal_rate_with), ' vs ', fmtPct(d.goal_rate_without),
          h('div', { class: 'note', text: fmtInt(d.persons_with) + ' with, ' + fmtInt(d.persons_without) + ' without' })),
        h('td', { class: 'n' }, '×' + fmtOdds(d.odds_ratio), h('div', { class: 'note', text: fmtOdds(d.ci_low) + '–' + fmtOdds(d.ci_high) })),
        h('td', { class: 'hide-narrow', 'aria-label': 'interval ' + fmtOdds(d.ci_low) + ' to ' + fmtOdds(d.ci_high) }, forest(d, lo, hi)));
    }
    var head = h('thead', null, h('tr', null, h('th', { text: 'Touchpoint' }), h('th', { class: 'n', text: 'Goal rate with vs without' }),
      h('th', { class: 'n', text: 'Odds ratio, 95%' }), h('th', { class: 'hide-narrow', text: 'log scale, 1 = no effect' })));
    var kids = [h('div', { class: 'table-scroll' }, h('table', { id: 'drivers-table' }, head, h('tbody', null, list.slice(0, shown).map(row))))];
    if (list.length > shown) {
      kids.push(h('details', { class: 'more' }, h('summary', { text: 'All ' + list.length + ' drivers' }),
        h('div', { class: 'table-scroll' }, h('table', null, head.cloneNode(true), h('tbody', null, list.slice(shown).map(row))))));
    }
    fill(holder, kids);
  }

  // -- comparison ------------------------------------------------------------------------------

  function renderComparison() {
    var m = state.map;
    var cmp = m.comparison;
    var lede = $('compare-lede');
    var holder = $('compare-body');
    if (!cmp) {
      lede.textContent = 'The map has no start time, so there is no previous period of the same length to compare with.';
      holder.replaceChildren();
      return;
    }
    lede.textContent = 'Previous period: ' + fmtDate(cmp.previous_since) + ' – ' + fmtDate(cmp.previous_until) + ', ' + plural(cmp.persons_before, 'person') +
      '. Significant: a two-proportion z-test with |z| ≥ 1.96.';
    if (!cmp.persons_before) {
      lede.textContent += ' Nobody was seen in the previous period, so there is nothing to compare yet.';
      holder.replaceChildren();
      return;
    }
    var shifts = h('table', { id: 'shift-table' },
      h('thead', null, h('tr', null, h('th', { text: 'Stage' }), h('th', { class: 'n', text: 'Before' }), h('th', { class: 'n', text: 'Now' }), h('th', { class: 'n', text: 'Change' }))),
      h('tbody', null, cmp.stage_shifts.filter(function (x) { return x.rate_now != null || x.rate_before != null; }).map(function (x) {
        return h('tr', { class: x.significant ? 'hl' : '' },
          h('td', { text: x.stage }),
          h('td', { class: 'n', text: fmtPct(x.rate_before) }),
          h('td', { class: 'n', text: fmtPct(x.rate_now) }),
          h('td', { class: 'n' }, delta(x.rate_now, x.rate_before, { pts: true }) || '–', x.significant ? [' ', h('span', { class: 'tag sig', text: 'significant' })] : null));
      })));
    function edgeList(list, now) {
      if (!list.length) return none('None.');
      return h('ul', null, list.slice(0, 8).map(function (c) {
        return h('li', null, label(c.source) + ' → ' + label(c.target) + ' ', h('span', { class: 'note', text: plural(now ? c.persons_now : c.persons_before, 'person') }));
      }));
    }
    var movers = cmp.node_deltas.filter(function (d) { return d.node !== 'START' && d.node !== 'END' && d.node !== 'IN_PROGRESS'; })
      .sort(function (a, b) { return Math.abs(b.reach_now - b.reach_before) - Math.abs(a.reach_now - a.reach_before); }).slice(0, 8);
    holder.replaceChildren(h('div', { class: 'cmp-grid' },
      h('div', null, h('h3', { text: 'Conversion to the next stage' }), shifts),
      h('div', null, h('h3', { text: 'Reach that moved most' }), movers.length ? h('ul', null, movers.map(function (d) {
        return h('li', null, label(d.node) + ': ' + fmtPct(d.reach_before) + ' → ' + fmtPct(d.reach_now) + ' ', delta(d.reach_now, d.reach_before, { pts: true, good: state.ix.good(d.node) }));
      })) : none('No touchpoints.')),
      h('div', null, h('h3', { text: 'New transitions' }), edgeList(cmp.new_edges, true)),
      h('div', null, h('h3', { text: 'Gone transitions' }), edgeList(cmp.vanished_edges, false))));
  }

  // -- filters and live updates ----------------------------------------------------------------

  function defaultSince() {
    var days = boot.default_window_days;
    if (!days) return '';
    return (Math.round(days * 1000) / 1000) + 'd';
  }

  function initFilters() {
    var f = state.map.filters || {};
    if (state.live) {
      var q = new URLSearchParams(location.search);
      if (q.has('fresh')) {  // a reload should not rebuild the map again
        q.delete('fresh');
        history.replaceState(null, '', location.pathname + (q.toString() ? '?' + q : '') + location.hash);
      }
      var filtered = ['source', 'channel', 'persona'].some(function (k) { return q.get(k); });
      state.filters = {
        since: q.get('since') || (filtered ? 'all' : defaultSince()),
        source: q.getAll('source').join(','),
        channel: q.getAll('channel').join(','),
        persona: q.get('persona') || '',
      };
    } else {
      state.filters = {
        since: '',
        source: (f.sources || []).join(','),
        channel: (f.channels || []).join(','),
        persona: f.persona || '',
      };
    }
  }

  function isDefaultView() {
    var f = state.filters;
    return f.since === defaultSince() && !f.source && !f.channel && !f.persona;
  }
  function mapQuery() {
    var p = new URLSearchParams();
    if (isDefaultView()) return p;
    var f = state.filters;
    var others = f.source || f.channel || f.persona;
    // all time: no start at all, but a request with no parameters means the default map
    if (f.since === 'all') { if (!others) p.set('since', ALL_TIME); } else if (f.since) p.set('since', f.since);
    if (f.source) p.set('source', f.source);
    if (f.channel) p.set('channel', f.channel);
    if (f.persona) p.set('persona', f.persona);
    return p;
  }

  function renderFilters() {
    var f = state.filters;
    var select = $('f-since');
    var options = [];
    if (state.live) {
      var def = defaultSince();
      var seen = new Set();
      if (def) { options.push([def, 'Last ' + def.replace('d', ' days') + ' (default)']); seen.add(def); }
      WINDOWS.forEach(function (w) { if (!seen.has(w[0])) { options.push(w); seen.add(w[0]); } });
      if (f.since === ALL_TIME) f.since = 'all';
      if (f.since && !seen.has(f.since)) options.push([f.since, 'Since ' + f.since]);
    } else {
      options.push(['', cap(windowText(state.map)).replace(/ \(since .*\)$/, '')]);
    }
    fill(select, options.map(function (o) {
      return h('option', { value: o[0], selected: o[0] === f.since ? true : null, text: o[1] });
    }));
    select.value = f.since;
    $('f-source').value = f.source;
    $('f-channel').value = f.channel;
    $('f-persona').value = f.persona;
    var fields = $('filter-fields');
    fields.disabled = !state.live;
    $('auto-wrap').hidden = !state.live;
    $('refresh-now').hidden = !state.live;
    $('auto').checked = state.auto;
    $('auto-label').textContent = 'Auto-refresh every ' + boot.poll_seconds + ' s';
    $('compare').disabled = !state.map.comparison;
    var note = $('filter-note');
    if (state.live) {
      note.className = 'note';
      note.textContent = 'Filters rebuild the map on the collector; the unfiltered map is kept current and is the quickest.';
    } else {
      note.className = 'note snapshot';
      note.textContent = 'This exported file is a snapshot, so its filters cannot be changed here. For another slice run touchpoint map --html FILE with --since, --source, --channel or --persona, or open /map on a running collector.';
    }
    var channels = new Set();
    state.map.grid.forEach(function (g) { g.channels.forEach(function (c) { channels.add(c.channel); }); });
    fillList('dl-channel', Array.from(channels));
  }

  function fillList(id, values) {
    var list = $(id);
    var have = new Set(Array.from(list.options).map(function (o) { return o.value; }));
    values.forEach(function (v) { if (v && !have.has(v)) { list.appendChild(h('option', { value: v })); have.add(v); } });
  }

  function readForm() {
    state.filters = {
      since: $('f-since').value,
      source: $('f-source').value.trim(),
      channel: $('f-channel').value.trim(),
      persona: $('f-persona').value.trim(),
    };
  }

  function setBusy(busy) {
    $('main').setAttribute('aria-busy', busy ? 'true' : 'false');
    $('f-apply').disabled = busy;
    $('refresh-now').disabled = busy;
  }

  function refresh(opts) {
    if (!state.live) return Promise.resolve();
    var seq = ++state.seq;
    var params = mapQuery();
    var request = new URLSearchParams(params);
    if (opts && opts.fresh && !Array.from(params.keys()).length) request.set('fresh', '1');
    state.loading = true;
    setBusy(true);
    renderStatus();
    var qs = request.toString();
    return fetch('/v1/map' + (qs ? '?' + qs : ''), { headers: { Accept: 'application/json' }, cache: 'no-store', credentials: 'same-origin' })
      .then(function (res) {
        if (res.ok) return res.json();
        return res.json().catch(function () { return null; }).then(function (body) {
          var msg = body && body.error ? body.error.message : res.status + ' ' + res.statusText;
          if (res.status === 401) msg = 'the collector wants a read key for /v1/map (or server.open_read_on_loopback)';
          throw new Error(msg);
        });
      })
      .then(function (fresh) {
        if (seq !== state.seq) return;
        state.error = '';
        state.updatedAt = new Date();
        var p = params.toString();
        history.replaceState(null, '', location.pathname + (p ? '?' + p : '') + location.hash);
        var same = state.map && fresh.built_at === state.map.built_at && JSON.stringify(fresh.filters) === JSON.stringify(state.map.filters);
        state.map = fresh;
        if (!same) renderAll();
      })
      .catch(function (err) {
        if (seq !== state.seq) return;
        state.error = 'could not refresh: ' + (err && err.message ? err.message : String(err)) + '; showing the last map';
      })
      .then(function () {
        if (seq !== state.seq) return;
        state.loading = false;
        setBusy(false);
        renderStatus();
        schedule();
      });
  }

  function schedule() {
    clearTimeout(state.timer);
    if (!state.live || !state.auto) return;
    state.timer = setTimeout(function () {
      if (document.hidden) { schedule(); return; }
      refresh();
    }, boot.poll_seconds * 1000);
  }

  function loadSuggestions() {
    if (!state.live) return;
    var sql = "(SELECT 'source' AS kind, source AS value, count() AS n FROM events WHERE touchpoint != '' AND source != '' GROUP BY value ORDER BY n DESC, value LIMIT 50)" +
      " UNION ALL (SELECT 'channel', channel, count() AS n FROM events WHERE touchpoint != '' AND channel != '' GROUP BY channel ORDER BY n DESC, channel LIMIT 50)" +
      " UNION ALL (SELECT 'persona', JSONExtractString(traits, 'persona') AS p, count() AS n FROM events WHERE type = 'identify' AND p != '' GROUP BY p ORDER BY n DESC, p LIMIT 50)";
    fetch('/v1/query?final=0', { method: 'POST', headers: { 'Content-Type': 'text/plain' }, body: sql, credentials: 'same-origin', cache: 'no-store' })
      .then(function (res) { return res.ok ? res.json() : null; })
      .then(function (body) {
        if (!body || !body.rows) return;
        var lists = { source: [], channel: [], persona: [] };
        body.rows.forEach(function (r) { if (lists[r[0]]) lists[r[0]].push(String(r[1])); });
        fillList('dl-source', lists.source);
        fillList('dl-channel', lists.channel);
        fillList('dl-persona', lists.persona);
      })
      .catch(function () { /* suggestions are a convenience only */ });
  }

  // -- exports ---------------------------------------------------------------------------------

  function download(name, text, type) {
    var url = URL.createObjectURL(new Blob([text], { type: type }));
    var a = h('a', { href: url, download: name });
    document.body.appendChild(a);
    a.click();
    a.remove();
    setTimeout(function () { URL.revokeObjectURL(url); }, 2000);
  }

  function exportText(format) {
    if (!state.live || state.map.built_at === boot.exports_for) return Promise.resolve(boot[format]);
    var key = format + '|' + state.map.built_at + '|' + mapQuery().toString();
    if (state.exports[key]) return Promise.resolve(state.exports[key]);
    var qs = mapQuery().toString();
    return fetch('/map/export/' + format + (qs ? '?' + qs : ''), { cache: 'no-store', credentials: 'same-origin' }).then(function (res) {
      if (!res.ok) throw new Error(res.status + ' ' + res.statusText);
      return res.text();
    }).then(function (text) { state.exports[key] = text; return text; });
  }

  function flowSvgText() {
    var svg = $('flow-svg');
    if (!svg) return '';
    var copy = svg.cloneNode(true);
    copy.removeAttribute('class');
    copy.querySelectorAll('.ring,.hit').forEach(function (n) { n.remove(); });
    copy.querySelectorAll('[tabindex]').forEach(function (n) { n.removeAttribute('tabindex'); });
    copy.querySelectorAll('.edge,.node,.elabel').forEach(function (n) { n.removeAttribute('class'); n.removeAttribute('role'); n.removeAttribute('aria-pressed'); });
    var m = state.map;
    var caption = s('text', { x: 12, y: copy.getAttribute('height') - 6, 'font-size': 10, fill: C.muted,
      text: 'Touchpoint journey map · built ' + fmtDate(m.built_at) + ' · ' + fmtInt(m.coverage.persons) + ' persons · ' + windowText(m) });
    copy.setAttribute('height', String(Number(copy.getAttribute('height')) + 14));
    var vb = copy.getAttribute('viewBox').split(' ');
    vb[3] = String(Number(vb[3]) + 14);
    copy.setAttribute('viewBox', vb.join(' '));
    caption.setAttribute('y', String(Number(vb[3]) - 6));
    copy.querySelector('rect').setAttribute('height', vb[3]);
    copy.appendChild(caption);
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + new XMLSerializer().serializeToString(copy) + '\n';
  }

  function setupExports() {
    $('dl-svg').addEventListener('click', function () { download('journey-flow.svg', flowSvgText(), 'image/svg+xml'); });
    $('dl-json').addEventListener('click', function () { download('journey-map.json', JSON.stringify(state.map, null, 2) + '\n', 'application/json'); });
    [['mermaid', 'journey-map.mmd'], ['dot', 'journey-map.dot']].forEach(function (pair) {
      $('dl-' + pair[0]).addEventListener('click', function () {
        exportText(pair[0]).then(function (text) { download(pair[1], text, 'text/plain'); }, showExportError);
      });
    });
    document.querySelectorAll('details[data-format]').forEach(function (det) {
      det.addEventListener('toggle', function () { if (det.open) fillCode(det.getAttribute('data-format')); });
    });
    document.querySelectorAll('[data-copy]').forEach(function (button) {
      button.addEventListener('click', function () {
        var format = button.getAttribute('data-copy');
        exportText(format).then(function (text) {
          var done = function () { button.textContent = 'Copied'; setTimeout(function () { button.textContent = 'Copy'; }, 1500); };
          var fallback = function () {
            var range = document.createRange();
            range.selectNodeContents($('code-' + format));
            var sel = window.getSelection();
            sel.removeAllRanges();
            sel.addRange(range);
            button.textContent = 'Selected: press Ctrl+C';
          };
          if (navigator.clipboard && navigator.clipboard.writeText) navigator.clipboard.writeText(text).then(done, fallback);
          else fallback();
        }, showExportError);
      });
    });
  }
  function fillCode(format) {
    var pre = $('code-' + format);
    pre.textContent = 'Loading…';
    exportText(format).then(function (text) { pre.textContent = text; }, function (err) { pre.textContent = 'Could not load: ' + err.message; });
  }
  function showExportError(err) {
    state.error = 'export failed: ' + (err && err.message ? err.message : String(err));
    renderStatus();
  }

  // -- the whole page --------------------------------------------------------------------------

  function renderEmpty(m) {
    var cov = m.coverage;
    var empty = cov.events === 0;
    $('empty').hidden = !empty;
    $('content').hidden = empty;
    $('dl-svg').disabled = empty;
    var banner = $('banner');
    if (empty) {
      var filtered = filterText(m);
      $('empty-why').textContent = 'No touchpoint events match this map (' + windowText(m) + (filtered ? '; ' + filtered : '') + '), so there is nothing to draw yet.';
      var tips = [
        'Send events that name a touchpoint: an SDK call with touchpoint=…, or a tracked event name the taxonomy knows (for example “Product Viewed” or “Order Completed”).',
        filtered ? 'Clear the filters (Reset) or pick another persona, source or channel.' : 'Widen the time window.',
        state.live ? 'New events reach the map within seconds; the unfiltered map is rebuilt every few minutes, or now with “Refresh now”.' : 'Export again once events have arrived: touchpoint map --html FILE.',
      ];
      fill($('empty-tips'), tips.map(function (t) { return h('li', { text: t }); }));
      banner.hidden = true;
      return true;
    }
    if (cov.persons < m.settings.min_support) {
      banner.className = 'banner info';
      banner.textContent = 'Only ' + plural(cov.persons, 'person') + ' so far: pain points and drivers need at least ' + m.settings.min_support +
        ' persons behind them, so those parts stay empty until more journeys arrive.';
      banner.hidden = false;
    } else banner.hidden = true;
    return false;
  }

  function renderAll() {
    var m = state.map;
    state.ix = index(m);
    renderMeta();
    renderStatus();
    renderFilters();
    $('compare').checked = state.compare && !!m.comparison;
    if (renderEmpty(m)) { document.body.setAttribute('data-ready', String(Date.now())); return; }
    renderSummary();
    renderGrid();
    renderLegend();
    renderFlow();
    renderFunnel();
    renderPaths();
    renderDrivers();
    renderComparison();
    document.querySelectorAll('details[data-format]').forEach(function (det) { if (det.open) fillCode(det.getAttribute('data-format')); });
    document.body.setAttribute('data-ready', String(Date.now()));
  }

  function renderResponsive() {
    if (!state.map || state.map.coverage.events === 0) return;
    var active = document.activeElement;
    var focused = active && active.closest && active.closest('.node') ? active.getAttribute('data-node') : null;
    drawCurve();
    renderFlow();
    renderFunnel();
    if (focused) {
      var again = document.querySelector('.node[data-node="' + CSS.escape(focused) + '"]');
      if (again) again.focus();
    }
  }

  function setup() {
    var capSelect = $('edge-cap');
    [[25, '25 largest'], [50, '50 largest'], [100, '100 largest'], [250, '250 largest']].forEach(function (o) {
      capSelect.appendChild(h('option', { value: String(o[0]), selected: o[0] === state.edgeCap ? true : null, text: o[1] }));
    });
    capSelect.addEventListener('change', function () { state.edgeCap = Number(capSelect.value); renderFlow(); });
    $('filters').addEventListener('submit', function (ev) {
      ev.preventDefault();
      readForm();
      refresh();
    });
    $('f-since').addEventListener('change', function () { readForm(); refresh(); });
    $('f-reset').addEventListener('click', function () {
      state.filters = { since: defaultSince(), source: '', channel: '', persona: '' };
      renderFilters();
      refresh();
    });
    $('refresh-now').addEventListener('click', function () { readForm(); refresh({ fresh: true }); });
    $('auto').addEventListener('change', function () { state.auto = $('auto').checked; renderStatus(); schedule(); });
    $('compare').addEventListener('change', function () { state.compare = $('compare').checked; renderAll(); });
    document.addEventListener('visibilitychange', function () {
      if (!document.hidden && state.live && state.auto && Date.now() - state.updatedAt.getTime() > boot.poll_seconds * 1000) refresh();
    });
    var pending = 0;
    var lastWidth = window.innerWidth;
    window.addEventListener('resize', function () {
      if (window.innerWidth === lastWidth) return;
      lastWidth = window.innerWidth;
      clearTimeout(pending);
      pending = setTimeout(renderResponsive, 150);
    });
    document.addEventListener('keydown', function (ev) {
      if (ev.key === 'Escape' && state.selected && !ev.target.closest('.flow-svg')) select(null, false);
    });
    $('flow-details').setAttribute('tabindex', '-1');
    setupExports();
  }

  if (!state.map) {
    $('status').textContent = 'This page carries no map data.';
    return;
  }
  setup();
  initFilters();
  renderAll();
  loadSuggestions();
  schedule();
})();
