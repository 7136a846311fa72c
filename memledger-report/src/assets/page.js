(function () {
  "use strict";
  var body = document.body;
  if (window.__memledgerErrors.length) {
    body.dataset.errors = window.__memledgerErrors.join(" | ");
  }
  var units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
  function bytes(v) {
    if (v === null || v === undefined) { return "-"; }
    var u = 0;
    while (v >= 1024 && u < units.length - 1) { v /= 1024; u += 1; }
    return (u === 0 ? v.toFixed(0) : v.toFixed(1)) + " " + units[u];
  }
  function seconds(t) {
    if (t < 60) { return t.toFixed(t < 10 ? 2 : 1) + " s"; }
    var s = Math.round(t);
    var h = Math.floor(s / 3600), m = Math.floor(s % 3600 / 60), r = s % 60;
    return (h > 0 ? h + " h " : "") + m + " min " + r + " s";
  }
  var chart = document.getElementById("chart");
  function highlight(k) {
    if (!chart) { return; }
    var areas = chart.querySelectorAll(".area");
    for (var i = 0; i < areas.length; i++) {
      areas[i].classList.toggle("on", areas[i].getAttribute("data-series") === k);
    }
    chart.classList.toggle("focus", k !== null);
  }
  var keyed = document.querySelectorAll("[data-series]");
  for (var i = 0; i < keyed.length; i++) {
    if (keyed[i].tagName.toLowerCase() === "path") { continue; }
    keyed[i].addEventListener("mouseenter", function (e) {
      highlight(e.currentTarget.getAttribute("data-series"));
    });
    keyed[i].addEventListener("mouseleave", function () { highlight(null); });
  }
  var source = document.getElementById("chart-data");
  if (chart && source) {
    var data = JSON.parse(source.textContent);
    var wrap = document.getElementById("chart-wrap");
    var tip = document.getElementById("tooltip");
    var cursor = document.getElementById("cursor");
    var nearest = function (x) {
      var lo = 0, hi = data.x.length - 1;
      while (hi - lo > 1) {
        var mid = (lo + hi) >> 1;
        if (data.x[mid] < x) { lo = mid; } else { hi = mid; }
      }
      return Math.abs(data.x[lo] - x) <= Math.abs(data.x[hi] - x) ? lo : hi;
    };
    var row = function (color, label, value, strong) {
      var line = document.createElement("div");
      var key = document.createElement("span");
      key.className = "swatch";
      key.style.background = color;
      var name = document.createElement(strong ? "b" : "span");
      name.textContent = label + " ";
      var figure = document.createElement("span");
      figure.className = "figure";
      figure.textContent = value;
      line.appendChild(key);
      line.appendChild(name);
      line.appendChild(figure);
      return line;
    };
    chart.addEventListener("mousemove", function (e) {
      if (!data.x.length) { return; }
      var box = chart.getBoundingClientRect();
      var x = (e.clientX - box.left) * data.width / box.width;
      var i = nearest(x);
      cursor.setAttribute("x1", data.x[i]);
      cursor.setAttribute("x2", data.x[i]);
      cursor.setAttribute("visibility", "visible");
      while (tip.firstChild) { tip.removeChild(tip.firstChild); }
      var head = document.createElement("div");
      head.className = "tip-head";
      head.textContent = seconds(data.t[i]) + " after the start";
      tip.appendChild(head);
      var total = 0;
      for (var k = data.series.length - 1; k >= 0; k--) {
        var s = data.series[k];
        total += s.v[i];
        tip.appendChild(row(s.color, s.label, bytes(s.v[i]), false));
      }
      tip.appendChild(row("transparent", "ledger total", bytes(total), true));
      if (data.rss[i] !== null) {
        tip.appendChild(row("#222", "process RSS", bytes(data.rss[i]), true));
      }
      tip.hidden = false;
      var area = wrap.getBoundingClientRect();
      var left = e.clientX - area.left + 16;
      if (left + tip.offsetWidth > area.width) { left = e.clientX - area.left - tip.offsetWidth - 16; }
      tip.style.left = Math.max(0, left) + "px";
      tip.style.top = Math.max(0, e.clientY - area.top - tip.offsetHeight / 2) + "px";
    });
    chart.addEventListener("mouseleave", function () {
      tip.hidden = true;
      cursor.setAttribute("visibility", "hidden");
    });
  }
  // Opened with `#check`, the page moves the cursor over the chart and onto the first legend
  // entry once, so that a headless browser exercises the interactive parts.
  if (location.hash === "#check" && chart) {
    var box = chart.getBoundingClientRect();
    chart.dispatchEvent(new MouseEvent("mousemove", {
      clientX: box.left + box.width * 0.8, clientY: box.top + box.height / 2, bubbles: true
    }));
    var entry = document.querySelector("#legend li[data-series]");
    if (entry) { entry.dispatchEvent(new MouseEvent("mouseenter")); }
  }
  body.dataset.ready = "1";
})();
