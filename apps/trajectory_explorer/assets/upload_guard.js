// Refuse an oversized upload with a message instead of silence: dcc.Upload drops a
// file over its max_size without telling anyone. The limit is the data-max-bytes
// attribute of #upload-box (the app's --max-upload-mb).
(function () {
    function check(files, target) {
        var box = target && target.closest ? target.closest("[data-max-bytes]") : null;
        if (!box || !files || !files.length) { return; }
        var limit = parseInt(box.getAttribute("data-max-bytes"), 10);
        for (var i = 0; i < files.length; i++) {
            var f = files[i];
            if (f.size > limit) {
                var mb = function (n) {
                    return n >= 1048576 ? (n / 1048576).toFixed(1) + " MB" : (n / 1024).toFixed(0) + " kB";
                };
                var text = f.name + ": " + mb(f.size) + " is over the upload limit of " + mb(limit) +
                    " (start the app with a larger --max-upload-mb to allow it)";
                if (window.dash_clientside && window.dash_clientside.set_props) {
                    window.dash_clientside.set_props("upload-message", {children: {
                        type: "Span", namespace: "dash_html_components", props: {children: text, className: "error"}
                    }});
                }
            }
        }
    }
    document.addEventListener("change", function (e) {
        if (e.target && e.target.type === "file") { check(e.target.files, e.target); }
    }, true);
    document.addEventListener("drop", function (e) {
        if (e.dataTransfer) { check(e.dataTransfer.files, e.target); }
    }, true);
})();
