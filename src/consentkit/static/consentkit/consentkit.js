/* consentkit: progressive enhancement only. Every control is a real form or link that
   works without this file; with it, choices are saved with fetch and applied in place. */
(function (d, w) {
  "use strict";
  var cfg = {};
  try {
    cfg = JSON.parse(d.getElementById("consentkit-config").textContent) || {};
  } catch (e) { /* no config: forms still work, no cookie list */ }
  var state = cfg.state;
  var $ = function (id) { return d.getElementById(id); };
  var all = function (sel, root) { return [].slice.call((root || d).querySelectorAll(sel)); };
  var banner = $("ck-banner"), done, panel;
  var opener, busy, loading;

  function granted(s, c) { return s.granted.indexOf(c) > -1; }
  function json(r) { if (!r.ok) throw r.status; return r.json(); }
  function changed(s) { d.dispatchEvent(new CustomEvent("consentkit:change", { detail: s })); }

  // Gated markup of granted categories becomes live: scripts are re-created (a copied
  // script never runs), iframes and images get their src.
  function activate(s) {
    all("[data-consentkit]").forEach(function (x) {
      var c = x.getAttribute("data-consentkit"), src = x.getAttribute("data-src");
      if (!granted(s, c)) return;
      if (x.tagName == "SCRIPT") {
        if (x.type != "text/plain") return;
        var n = d.createElement("script");
        [].forEach.call(x.attributes, function (a) {
          if (!/^(type|data-src|nonce)$/.test(a.name)) n.setAttribute(a.name, a.value);
        });
        n.nonce = x.nonce; // the attribute is blanked once a CSP is in force
        if (src) { n.src = src; n.async = false; }
        n.text = x.text;
        x.parentNode.replaceChild(n, x);
      } else if (src) {
        x.src = src;
        x.removeAttribute("data-src");
        x.hidden = false;
      }
    });
    all("[data-consentkit-placeholder]").forEach(function (p) {
      if (granted(s, p.getAttribute("data-consentkit-placeholder"))) p.remove();
    });
  }

  function glob(p) {
    return new RegExp("^" + p.split("*").map(function (t) {
      return t.replace(/[.+?^${}()|[\]\\]/g, "\\$&");
    }).join(".*") + "$");
  }

  // Delete the JavaScript-visible cookies declared under refused categories, on this host
  // and its parent domains, at the declared path (the server expires HttpOnly ones).
  function purge(s) {
    var parts = location.hostname.split("."), doms = [""], i;
    var tail = ";max-age=0" + (location.protocol == "https:" ? ";secure" : "");
    for (i = 0; i < parts.length - 1; i++) doms.push(";domain=" + parts.slice(i).join("."));
    s.denied.forEach(function (c) {
      ((cfg.cookies || {})[c] || []).forEach(function (k) {
        var re = glob(k.name);
        d.cookie.split(";").forEach(function (pair) {
          var name = pair.split("=")[0].trim();
          if (!re.test(name)) return;
          doms.concat(k.domain ? [";domain=" + k.domain] : []).forEach(function (dom) {
            [k.path || "/", "/"].forEach(function (path) {
              d.cookie = name + "=;path=" + path + dom + tail;
            });
          });
        });
      });
    });
  }

  function consentMode(s) {
    if (!cfg.consentMode) return;
    var v = function (c) { return granted(s, c) ? "granted" : "denied"; };
    var gtag = w.gtag || function () { (w.dataLayer = w.dataLayer || []).push(arguments); };
    gtag("consent", "update", {
      analytics_storage: v("statistics"),
      ad_storage: v("marketing"),
      ad_user_data: v("marketing"),
      ad_personalization: v("marketing"),
      personalization_storage: v("preferences")
    });
  }

  function sync() { // the switches show the saved choice (unsaved changes are dropped)
    if (state) all("input[name=granted]").forEach(function (i) { i.checked = granted(state, i.value); });
  }

  function visible(x) { return x && x.isConnected && x.getClientRects().length > 0; }

  function apply(s, shown) { // the page follows choice s; of the statuses, shows shown
    state = s;
    activate(s);
    purge(s);
    sync();
    consentMode(s);
    if (banner) banner.hidden = !!s.decided;
    all(".ck-status").forEach(function (x) { x.hidden = x != shown; });
  }

  function applyDecision(s, form) {
    var fromPanel = panel && panel.open;
    var place = form.closest("[data-consentkit-placeholder]");
    var frame = place && place.previousElementSibling; // the gated iframe it stands for
    apply(s, done);
    if (!place && done) done.hidden = false;
    if (fromPanel) panel.close(); // the close listener moves focus
    else if (frame && visible(frame)) frame.focus();
    else if (!place && done) done.focus();
    changed(s);
  }

  // Back/Forward may show this page from the browser's cache: apply a choice made since.
  w.addEventListener("pageshow", function (e) {
    if (e.persisted && w.fetch && cfg.preferencesUrl) fetch(cfg.preferencesUrl, { headers: { Accept: "application/json" } })
      .then(json)
      .then(function (s) {
        if (s && s.granted && (!state || s.decided != state.decided || s.granted + "" != state.granted + "")) {
          apply(s);
          changed(s);
        }
      }, function () {});
  });

  // A native submission: the server answers with a 303 back to the page, or an error.
  function submitNatively(form, button) {
    if (button && button.name) {
      var i = d.createElement("input");
      i.type = "hidden";
      i.name = button.name;
      i.value = button.value;
      form.appendChild(i);
    }
    HTMLFormElement.prototype.submit.call(form);
  }

  d.addEventListener("submit", function (e) {
    var form = e.target, button = e.submitter;
    var allow = form.getAttribute("data-consentkit-allow");
    if (!w.fetch || !/^post$/i.test(form.getAttribute("method")) || button && button.getAttribute("formmethod") ||
        !(allow || form.closest(".ck-root,.ck-banner,.ck-page"))) return;
    e.preventDefault();
    if (busy) return;
    var data = new FormData(form);
    if (button && button.name) data.append(button.name, button.value);
    if (allow && state) { // allow one more category on top of what is granted now
      data.set("action", "custom");
      data.delete("granted");
      state.granted.concat(allow).forEach(function (c, i, list) {
        if (c != "functional" && list.indexOf(c) == i) data.append("granted", c);
      });
    }
    busy = 1;
    // getAttribute: the form's fields named "action" shadow the form.action property
    fetch(form.getAttribute("action") || location.href, {
      method: "POST",
      body: new URLSearchParams(data),
      headers: { Accept: "application/json" }
    }).then(json).then(function (s) {
      busy = 0;
      applyDecision(s, form);
    }, function () {
      busy = 0;
      submitNatively(form, button);
    });
  });

  function show() {
    sync();
    panel.showModal();
    $("ck-panel-title").focus();
  }

  // No panel on a returning visitor's page: fetch it, else go to the preferences page.
  function load(open) {
    if (loading) return;
    loading = 1;
    var next = "next=" + encodeURIComponent(location.pathname + location.search);
    fetch(cfg.preferencesUrl + "/panel?locale=" + cfg.locale + "&" + next)
      .then(function (r) { if (!r.ok) throw 0; return r.text(); })
      .then(function (h) { d.body.insertAdjacentHTML("beforeend", h); found(); show(); })
      .catch(function () { location.href = open.href || cfg.preferencesUrl + "?" + next; })
      .then(function () { loading = 0; });
  }

  d.addEventListener("click", function (e) {
    var t = e.target;
    if (!t.closest) return;
    var open = t.closest("[data-consentkit-open]"), close = t.closest("[data-consentkit-close]");
    if (open && w.HTMLDialogElement && (panel || w.fetch && cfg.preferencesUrl) && !(e.ctrlKey || e.metaKey || e.shiftKey)) {
      e.preventDefault();
      opener = open;
      panel ? show() : load(open);
    } else if (close) {
      var dialog = close.closest("dialog"), box = close.parentNode, manage = $("ck-manage");
      if (dialog) return dialog.close();
      var had = box.contains(d.activeElement);
      box.hidden = true;
      // not to the top of the page
      if (had && visible(manage)) manage.focus();
    }
  });

  function found() {
    done = $("ck-done");
    panel = $("ck-panel");
    if (panel) panel.addEventListener("close", function () {
      // Back to the opener, or to the confirmation if the opener left with the banner.
      var target = visible(opener) ? opener : done && !done.hidden ? done : null;
      if (target) target.focus();
    });
  }
  found();
  if (w.HTMLDialogElement) all("[data-consentkit-open]").forEach(function (o) { o.setAttribute("aria-haspopup", "dialog"); });
  if (banner) { // first in reading and tab order, without taking focus on page load
    d.body.insertBefore(banner, d.body.firstChild);
    if (done) d.body.insertBefore(done, banner.nextSibling);
  }
  if (state) {
    activate(state);
    purge(state);
  }
})(document, window);
