(function () {
  "use strict";
  var every = window.__memledgerRefreshMs;
  var refreshes = 0;
  // Scripts parsed into another document do not run when moved here: each is replaced by a
  // fresh element with the same text, which does. Data blocks (a `type` other than
  // JavaScript's, as the chart's JSON) stay as they are.
  function rerun(body) {
    var scripts = body.querySelectorAll("script");
    for (var i = 0; i < scripts.length; i++) {
      var type = scripts[i].getAttribute("type");
      if (type && type !== "text/javascript") { continue; }
      var fresh = document.createElement("script");
      fresh.textContent = scripts[i].textContent;
      scripts[i].parentNode.replaceChild(fresh, scripts[i]);
    }
  }
  function tick() {
    var url = window.location.href.split("#")[0];
    fetch(url, { cache: "no-store", credentials: "same-origin" })
      .then(function (response) {
        if (!response.ok) { throw new Error("HTTP " + response.status); }
        return response.text();
      })
      .then(function (html) {
        var doc = new DOMParser().parseFromString(html, "text/html");
        var x = window.scrollX, y = window.scrollY;
        var body = document.adoptNode(doc.body);
        refreshes += 1;
        body.dataset.refreshes = String(refreshes);
        document.documentElement.replaceChild(body, document.body);
        document.title = doc.title;
        rerun(body);
        window.scrollTo(x, y);
      })
      .catch(function (e) {
        document.body.dataset.refreshError = String(e);
      })
      .then(function () { setTimeout(tick, every); });
  }
  setTimeout(tick, every);
})();
