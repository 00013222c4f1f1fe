// approvalgate console: live updates without reloading (vanilla JS, no framework, no inline
// code: the page's CSP allows scripts from 'self' only).
//
// The server sends `event: changed` on /events whenever its watch-fed state changes; the
// page then fetches its fragment (the element #fragment, data-fragment = its URL as the
// server wrote it: the queue table with the page's filters, or the request's story with what
// the page opened on, which a click signs) and swaps the server's HTML in,
// keeping focus and what was typed. #live says "live" or "reconnecting" (aria-live).
(function () {
  "use strict";

  var container = document.getElementById("fragment");
  var live = document.getElementById("live");
  if (!container || !live || typeof window.EventSource !== "function") {
    return;
  }
  // the whole URL, as the server wrote it: the queue's with the page's filters, a request's
  // with what the page opened on (uid, digest, pin), which an update never changes
  var url = container.getAttribute("data-fragment");
  var busy = false;
  var again = false;

  function say(state, text) {
    if (live.getAttribute("data-state") !== state) {
      live.setAttribute("data-state", state);
      live.textContent = text;
    }
  }

  // What the swap must keep: the focused element (by id, else by name and value) and the
  // values typed into text fields and textareas.
  function remember() {
    var kept = { focus: null, values: [] };
    var active = document.activeElement;
    if (active && container.contains(active)) {
      kept.focus = {
        id: active.id,
        name: active.getAttribute("name"),
        value: active.getAttribute("value"),
        href: active.getAttribute("href"),
      };
    }
    var fields = container.querySelectorAll("textarea[id], input[type=text][id]");
    for (var i = 0; i < fields.length; i++) {
      if (fields[i].value) {
        kept.values.push({ id: fields[i].id, value: fields[i].value });
      }
    }
    return kept;
  }

  function restore(kept) {
    for (var i = 0; i < kept.values.length; i++) {
      var field = document.getElementById(kept.values[i].id);
      if (field && container.contains(field)) {
        field.value = kept.values[i].value;
      }
    }
    var f = kept.focus;
    if (!f) {
      return;
    }
    var target = f.id ? document.getElementById(f.id) : null;
    if (!target && f.href) {
      var links = container.querySelectorAll("a[href]");
      for (var j = 0; j < links.length; j++) {
        if (links[j].getAttribute("href") === f.href) {
          target = links[j];
          break;
        }
      }
    }
    if (!target && f.name) {
      var named = container.querySelectorAll("[name]");
      for (var k = 0; k < named.length; k++) {
        if (named[k].getAttribute("name") === f.name && named[k].getAttribute("value") === f.value) {
          target = named[k];
          break;
        }
      }
    }
    if (target && typeof target.focus === "function") {
      target.focus({ preventScroll: true });
    }
  }

  function refresh() {
    if (busy) {
      again = true;
      return;
    }
    busy = true;
    fetch(url, { credentials: "same-origin", headers: { Accept: "text/html" } })
      .then(function (response) {
        if (!response.ok) {
          throw new Error("HTTP " + response.status);
        }
        return response.text();
      })
      .then(function (html) {
        var kept = remember();
        container.innerHTML = html; // the server's HTML, autoescaped by its templates
        restore(kept);
        say("live", "live: updates as the cluster changes");
      })
      .catch(function () {
        say("reconnecting", "reconnecting: the page may be out of date");
      })
      .then(function () {
        busy = false;
        if (again) {
          again = false;
          refresh();
        }
      });
  }

  var source = new EventSource("/events", { withCredentials: true });
  source.addEventListener("open", function () {
    say("live", "live: updates as the cluster changes");
  });
  source.addEventListener("changed", refresh);
  source.addEventListener("error", function () {
    // EventSource reconnects by itself; a change missed meanwhile is fetched on reopen.
    say("reconnecting", "reconnecting to the console…");
    source.addEventListener("open", refresh, { once: true });
  });
})();
