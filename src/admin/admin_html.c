/*
 * admin_html: escaping and the frame every page shares.  Every value a
 * page shows (a user name, a queue entry's sender, a log line) is
 * written through html_esc; attribute values too (it escapes quotes).
 * The stylesheet and the script are compiled in and served as
 * /static/admin.css and /static/admin.js: no CDN, no font, no script
 * from elsewhere, and the pages work without the script (it only adds
 * confirmations and a table filter).
 */
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admin_priv.h"
#include "xmalloc.h"

/* is_text: a textarea's text, whose lines stay lines (CRLF as LF). */
static void
esc(struct evbuffer *b, const char *s, bool is_text)
{
	const char *run = s;

	if (s == NULL)
		return;
	for (; *s != '\0'; s++) {
		const char *rep = NULL;

		if (is_text && (*s == '\n' || (s[0] == '\r' && s[1] == '\n'))) {
			if (*s == '\r') {
				evbuffer_add(b, run, (size_t)(s - run));
				run = s + 1; /* the LF follows */
			}
			continue;
		}

		switch (*s) {
		case '&':
			rep = "&amp;";
			break;
		case '<':
			rep = "&lt;";
			break;
		case '>':
			rep = "&gt;";
			break;
		case '"':
			rep = "&quot;";
			break;
		case '\'':
			rep = "&#39;";
			break;
		default:
			/* Control bytes never reach the page. */
			if ((unsigned char)*s < 0x20 && *s != '\t')
				rep = "\xef\xbf\xbd"; /* U+FFFD */
		}
		if (rep != NULL) {
			evbuffer_add(b, run, (size_t)(s - run));
			evbuffer_add(b, rep, strlen(rep));
			run = s + 1;
		}
	}
	evbuffer_add(b, run, (size_t)(s - run));
}

void
html_esc(struct evbuffer *b, const char *s)
{
	esc(b, s, false);
}

void
html_textarea(struct evbuffer *b, const char *s)
{
	/* HTML drops one newline right after <textarea>: this one, so
	 * that a list starting with a blank line keeps it. */
	evbuffer_add(b, "\n", 1);
	esc(b, s, true);
}

void
url_esc(struct evbuffer *b, const char *s)
{
	static const char hex[] = "0123456789ABCDEF";

	for (; *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;

		if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		    (c >= '0' && c <= '9') || c == '-' || c == '.' ||
		    c == '_' || c == '@' || c == '~')
			evbuffer_add(b, s, 1);
		else
			evbuffer_add_printf(
			    b, "%%%c%c", hex[c >> 4], hex[c & 15]);
	}
}

/* Only for our own constant text and numbers: never a client value. */
void
html_printf(struct evbuffer *b, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	evbuffer_add_vprintf(b, fmt, ap);
	va_end(ap);
}

static const struct {
	const char *path, *title;
	bool is_server; /* full admins only */
} nav[] = {
    {"/", "Dashboard", true},
    {"/relay", "Mail Relay Options", true},
    {"/relay-check", "Relay check", true},
    {"/domains", "Domains", true},
    {"/users", "Users", false},
    {"/aliases", "Aliases and lists", false},
    {"/queue", "Queue", true},
    {"/log", "Log", true},
};

void
html_head(struct evbuffer *b, const struct admin_who *w, const char *title,
    const char *active)
{
	evbuffer_add_printf(b,
	    "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n"
	    "<meta charset=\"utf-8\">\n"
	    "<meta name=\"viewport\" content=\"width=device-width, "
	    "initial-scale=1\">\n<title>");
	html_esc(b, title);
	evbuffer_add_printf(b,
	    " - postern</title>\n"
	    "<link rel=\"stylesheet\" href=\"/static/admin.css\">\n"
	    "<link rel=\"icon\" href=\"/static/icon.svg\">\n"
	    "<script src=\"/static/admin.js\" defer></script>\n"
	    "</head>\n<body>\n<header><span class=\"brand\">postern</span>\n");
	if (w != NULL) {
		evbuffer_add_printf(b, "<nav>\n");
		for (size_t i = 0; i < sizeof(nav) / sizeof(nav[0]); i++) {
			if (nav[i].is_server && w->domain[0] != '\0')
				continue;
			evbuffer_add_printf(b, "<a href=\"%s\"%s>%s</a>\n",
			    nav[i].path,
			    strcmp(active, nav[i].path) == 0
			        ? " aria-current=\"page\""
			        : "",
			    nav[i].title);
		}
		evbuffer_add_printf(b, "</nav>\n<form method=\"post\" "
		                       "action=\"/logout\" class=\"logout\">");
		html_csrf(b, w);
		evbuffer_add_printf(b, "<span>");
		html_esc(b, w->name);
		if (w->domain[0] != '\0') {
			evbuffer_add_printf(b, " (");
			html_esc(b, w->domain);
			evbuffer_add_printf(b, ")");
		}
		evbuffer_add_printf(b, "</span> <button type=\"submit\">Log "
		                       "out</button></form>\n");
	}
	evbuffer_add_printf(b, "</header>\n<main>\n<h1>");
	html_esc(b, title);
	evbuffer_add_printf(b, "</h1>\n");
	if (w != NULL && w->sess != NULL && w->sess->flash[0] != '\0') {
		evbuffer_add_printf(
		    b, "<p class=\"flash\" role=\"status\" id=\"flash\">");
		html_esc(b, w->sess->flash);
		evbuffer_add_printf(b, "</p>\n");
		w->sess->flash[0] = '\0';
	}
}

void
html_foot(struct evbuffer *b)
{
	evbuffer_add_printf(b, "</main>\n</body>\n</html>\n");
}

/* From who's own copy of the token: a job builds its page on a worker,
 * where the session (the loop's, and maybe ended meanwhile) is never
 * read. */
void
html_csrf(struct evbuffer *b, const struct admin_who *w)
{
	if (w == NULL || w->csrf[0] == '\0')
		return;
	evbuffer_add_printf(
	    b, "<input type=\"hidden\" name=\"csrf\" value=\"%s\">", w->csrf);
}

/* A block of lines shown in <pre>: escaped, its line ends kept. */
void
html_esc_lines(struct evbuffer *b, const char *s)
{
	esc(b, s, true);
}

const char admin_css[] =
    ":root{--fg:#1b1f24;--bg:#fff;--mut:#5b6570;--acc:#0b5cad;"
    "--bad:#a4161a;--ok:#1b7f3b;--line:#d8dde3;--soft:#f3f5f8}\n"
    "*{box-sizing:border-box}\n"
    "body{margin:0;font:15px/1.45 system-ui,-apple-system,'Segoe UI',"
    "sans-serif;color:var(--fg);background:var(--bg)}\n"
    "header{display:flex;flex-wrap:wrap;align-items:center;gap:.25rem 1rem;"
    "padding:.5rem 1rem;background:#14263b;color:#fff}\n"
    "header a{color:#dbe7f5;text-decoration:none;padding:.25rem .4rem;"
    "border-radius:3px}\n"
    "header a[aria-current]{background:#2d4d72;color:#fff}\n"
    ".brand{font-weight:700;letter-spacing:.05em;margin-right:.5rem}\n"
    "nav{display:flex;flex-wrap:wrap;gap:.25rem;flex:1}\n"
    ".logout{margin:0;display:flex;gap:.5rem;align-items:center}\n"
    "main{padding:1rem 1.5rem;max-width:1200px}\n"
    "h1{font-size:1.4rem;margin:.25rem 0 1rem}\n"
    "h2{font-size:1.1rem;margin:1.5rem 0 .5rem}\n"
    "table{border-collapse:collapse;width:100%;margin:.5rem 0 1rem}\n"
    "th,td{text-align:left;padding:.3rem .5rem;border-bottom:1px solid "
    "var(--line);vertical-align:top}\n"
    "th{background:var(--soft);font-weight:600}\n"
    "td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}\n"
    "form.inline{display:inline;margin:0}\n"
    "label.inline{display:inline;margin:0 .25rem 0 0}\n"
    "fieldset{border:1px solid var(--line);border-radius:4px;"
    "margin:0 0 1rem;padding:.5rem 1rem}\n"
    "legend{font-weight:600}\n"
    "label{display:block;margin:.35rem 0}\n"
    "input,select,textarea,button{font:inherit}\n"
    "input[type=text],input:not([type]),input[type=password],textarea,"
    "select{padding:.25rem .4rem;border:1px solid #aab4bf;border-radius:3px;"
    "min-width:16rem}\n"
    "textarea{width:100%;min-height:6rem;font-family:ui-monospace,"
    "monospace}\n"
    "button{padding:.3rem .8rem;border:1px solid var(--acc);"
    "background:var(--acc);color:#fff;border-radius:3px;cursor:pointer}\n"
    "button.danger{background:var(--bad);border-color:var(--bad)}\n"
    "button.plain{background:#fff;color:var(--acc)}\n"
    ".mode{border:1px solid var(--line);border-radius:4px;padding:.4rem "
    ".6rem;margin:.3rem 0}\n"
    ".mode input{margin-right:.4rem}\n"
    ".mode p{margin:.2rem 0 0 1.6rem;color:var(--mut)}\n"
    ".forged{color:var(--bad)}\n"
    ".error{color:var(--bad);font-weight:600}\n"
    ".flash{background:#e8f4ea;border-left:4px solid var(--ok);"
    "padding:.4rem .8rem}\n"
    ".warn{background:#fff4e0;border-left:4px solid #c77700;"
    "padding:.4rem .8rem}\n"
    ".verdict-ACCEPT{color:var(--ok);font-weight:700}\n"
    ".verdict-REJECT,.verdict-TEMPFAIL{color:var(--bad);font-weight:700}\n"
    ".cards{display:grid;grid-template-columns:repeat(auto-fill,minmax("
    "14rem,1fr));gap:1rem}\n"
    ".card{border:1px solid var(--line);border-radius:4px;padding:.5rem "
    ".8rem}\n"
    ".card .big{font-size:1.6rem;font-weight:700}\n"
    ".charts{display:grid;grid-template-columns:repeat(auto-fill,minmax("
    "20rem,1fr));gap:1rem}\n"
    "svg{max-width:100%;height:auto}\n"
    "pre.log{background:var(--soft);padding:.5rem;overflow-x:auto;"
    "font-size:13px;white-space:pre-wrap}\n"
    ".login{max-width:22rem}\n"
    ".muted{color:var(--mut)}\n";

/* The browser's tab icon, so that no page load ends in a 404 for
 * /favicon.ico. */
const char admin_icon[] =
    "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 16 16\">"
    "<rect width=\"16\" height=\"16\" rx=\"3\" fill=\"#14263b\"/>"
    "<path d=\"M5 3h4a3.5 3.5 0 0 1 0 7H7.5v3H5z\" fill=\"#fff\"/>"
    "</svg>\n";

/* Progressive: a confirmation for dangerous buttons instead of their
 * "sure" box (without the script the box is required, and the server
 * asks again if it is not ticked), and a filter box over tables marked
 * filterable.  The box stops being required before any submit: the
 * browser checks required fields before the submit event, so a
 * required box left unticked would block the question. */
const char admin_js[] =
    "'use strict';\n"
    "document.querySelectorAll('form[data-confirm] input[name=confirm]')"
    ".forEach(function(c){\n"
    "  c.required=false;var l=c.closest('label');"
    "if(l)l.style.display='none';\n"
    "});\n"
    "document.addEventListener('submit',function(e){\n"
    "  var b=e.submitter||e.target.querySelector('[data-confirm]');\n"
    "  var m=(b&&b.getAttribute('data-confirm'))||"
    "e.target.getAttribute('data-confirm');\n"
    "  if(m&&!window.confirm(m)){e.preventDefault();return;}\n"
    "  if(m){var c=e.target.querySelector('input[name=confirm]');"
    "if(c)c.checked=true;}\n"
    "});\n"
    "document.querySelectorAll('table[data-filter]').forEach(function(t){\n"
    "  var i=document.createElement('input');i.type='search';\n"
    "  i.placeholder='Filter';i.setAttribute('aria-label','Filter');\n"
    "  t.parentNode.insertBefore(i,t);\n"
    "  i.addEventListener('input',function(){var q=i.value.toLowerCase();\n"
    "    t.querySelectorAll('tbody tr').forEach(function(r){\n"
    "      r.hidden=q&&r.textContent.toLowerCase().indexOf(q)<0;});});\n"
    "});\n";
