"""A small Sphinx extension for the effkit book (loaded by _config.yml's local_extensions).

Sphinx 7.4 lists an inline script added with ``app.add_js_file(None, body=...)`` twice on every
page when it is added after the builder starts (once as filename None, once as ''), and
sphinx-thebe adds its settings that way. The second copy throws ``Identifier 'THEBE_JS_URL' has
already been declared``. This drops exact repeats from each page's scripts.
"""


def _drop_repeated_scripts(app, pagename, templatename, context, doctree):
    scripts = context.get("script_files")
    if not scripts:
        return
    seen, unique = set(), []
    for script in scripts:
        key = (getattr(script, "filename", script) or "", tuple(sorted(getattr(script, "attributes", {}).items())))
        if key not in seen:
            seen.add(key)
            unique.append(script)
    scripts[:] = unique


def setup(app):
    app.connect("html-page-context", _drop_repeated_scripts)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
