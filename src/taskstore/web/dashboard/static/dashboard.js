// taskstore dashboard: the few behaviours that need script, without inline handlers (the pages' CSP forbids them).
document.addEventListener("submit", function (event) {
  var form = event.target;
  var question = form.getAttribute && form.getAttribute("data-confirm");
  if (question && !window.confirm(question)) {
    event.preventDefault();
  }
});

// A task page follows its task: each status event whose state differs from the one shown swaps in the page's
// fresh body (htmx), and the stream's "end" event (the task is finished) closes the connection for good.
document.addEventListener("DOMContentLoaded", function () {
  var body = document.querySelector("[data-live-task]");
  if (!body || !window.EventSource) {
    return;
  }
  var id = body.getAttribute("data-live-task");
  var root = document.body.getAttribute("data-root") || "";
  var source = new EventSource(root + "/api/v1/events?id=" + encodeURIComponent(id));
  source.addEventListener("status", function (event) {
    var current = document.querySelector("[data-live-task]");
    var shown = current ? current.getAttribute("data-status") : null;
    var status = JSON.parse(event.data);
    if (status.state !== shown) {
      htmx.ajax("GET", window.location.pathname, { target: "#task-body", select: "#task-body", swap: "outerHTML" });
    }
  });
  source.addEventListener("end", function () {
    source.close();
  });
});
