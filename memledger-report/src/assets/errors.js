window.__memledgerErrors = [];
window.onerror = function (message, source, line, column) {
  var text = String(message) + (line ? " (line " + line + ":" + column + ")" : "");
  var body = document.body;
  if (body) {
    body.dataset.errors = (body.dataset.errors ? body.dataset.errors + " | " : "") + text;
  } else {
    window.__memledgerErrors.push(text);
  }
  return false;
};
