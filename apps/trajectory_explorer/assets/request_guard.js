// Say so in the page when a callback request fails (an HTTP error such as 413 or 500, or
// no answer): outside debug mode Dash drops such a failure silently. The message goes
// where the control's own messages go (export, upload, or the status line).
(function () {
    var TARGETS = [
        ["export-message.children", "export-message", "export"],
        ["upload-message.children", "upload-message", "upload"],
        ["status.children", "status", "drawing the figures"]
    ];
    var realFetch = window.fetch;
    if (!realFetch) { return; }

    function target(url, init) {
        if (String(url).indexOf("_dash-update-component") === -1) { return null; }
        var body = init && typeof init.body === "string" ? init.body.slice(0, 2000) : "";
        var m = /"output":"([^"]*)"/.exec(body);  // Dash writes "output" first; uploads are long
        if (!m) { return null; }
        for (var i = 0; i < TARGETS.length; i++) {
            if (m[1].indexOf(TARGETS[i][0]) !== -1) { return TARGETS[i]; }
        }
        return null;
    }

    function say(t, text) {
        if (window.dash_clientside && window.dash_clientside.set_props) {
            window.dash_clientside.set_props(t[1], {children: {
                type: "Span", namespace: "dash_html_components", props: {children: text, className: "error"}
            }});
        }
    }

    window.fetch = function (url, init) {
        var t = target(url, init);
        var answer = realFetch.apply(this, arguments);
        if (!t) { return answer; }
        return answer.then(function (response) {
            if (!response.ok) {
                var why = response.status === 413 ? " (the request was too large)" : "";
                say(t, t[2] + " failed: the server answered HTTP " + response.status + why +
                    "; the server's log says more");
            }
            return response;
        }, function (error) {
            say(t, t[2] + " failed: the server did not answer (is protein-care app still running?)");
            throw error;
        });
    };
})();
