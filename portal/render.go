package portal

import (
	"bytes"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/txcloud/keys"
	"github.com/txcloud/keys/webhook"
)

// layout is what every page's template gets: the page's own data in Page.
type layout struct {
	Base       string // where the portal is mounted
	Nav        string // the section the page belongs to
	SignedIn   bool
	KeySession bool // signed in with a key: a sign-out button
	CSRF       string
	Account    string
	Env        string // the principal's environment ("" both)
	Page       any
}

// message is a page of a few words: not found, forbidden, a fault.
type message struct {
	Title, Text string
}

// nav names the section of each page, for the navigation's current item.
var nav = map[string]string{
	"keys": "keys", "keynew": "keys", "key": "keys", "revoke": "keys", "secret": "keys",
	"usage": "usage", "logs": "logs", "log": "logs",
	"webhooks": "webhooks", "webhooknew": "webhooks", "webhook": "webhooks",
}

var funcs = template.FuncMap{
	"when": func(t any) string {
		switch t := t.(type) {
		case time.Time:
			return when(t)
		case *time.Time:
			if t != nil {
				return when(*t)
			}
		}
		return "—"
	},
	"join": strings.Join,
	// lastAnswer is what the latest attempt of a delivery got: a status
	// code, or why there was none.
	"lastAnswer": func(as []webhook.Attempt) string {
		if len(as) == 0 {
			return "—"
		}
		a := as[len(as)-1]
		if a.ResponseCode != nil {
			return strconv.Itoa(*a.ResponseCode)
		}
		return a.Error
	},
	"ms": func(d time.Duration) string {
		return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000)
	},
}

// when is a time as the pages show it, to the minute, in UTC.
func when(t time.Time) string {
	if t.IsZero() {
		return "—"
	}
	return t.UTC().Format("2006-01-02 15:04 UTC")
}

// parsePages parses each page template with the layout.
func parsePages() (map[string]*template.Template, error) {
	layoutT, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/_*.html")
	if err != nil {
		return nil, err
	}
	names, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		return nil, err
	}
	pages := map[string]*template.Template{}
	for _, n := range names {
		name := strings.TrimSuffix(strings.TrimPrefix(n, "templates/"), ".html")
		if name == "layout" || strings.HasPrefix(name, "_") { // partials, in every page
			continue
		}
		t, err := template.Must(layoutT.Clone()).ParseFS(templateFS, n)
		if err != nil {
			return nil, err
		}
		pages[name] = t
	}
	return pages, nil
}

// render writes page name with status. It renders into a buffer first,
// so a template's failure is a clean 500, never half a page.
func (p *Portal) render(w http.ResponseWriter, r *http.Request, status int, name string, v *visit, data any) {
	l := layout{Base: p.c.Path, Nav: nav[name], Page: data}
	if v != nil {
		l.SignedIn, l.KeySession, l.CSRF, l.Account, l.Env = true, v.session != nil, v.csrf, v.p.AccountID, string(v.p.Environment)
	}
	var buf bytes.Buffer
	if err := p.pages[name].ExecuteTemplate(&buf, "layout.html", l); err != nil {
		p.c.Logger.ErrorContext(r.Context(), "portal: rendering a page", "page", name, "error", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = buf.WriteTo(w)
}

func (p *Portal) forbidden(w http.ResponseWriter, r *http.Request) {
	p.render(w, r, http.StatusForbidden, "message", nil, message{Title: "Forbidden",
		Text: "This form has expired or did not come from this site. Go back, reload the page and try again."})
}

func (p *Portal) notFound(w http.ResponseWriter, r *http.Request, v *visit) {
	p.render(w, r, http.StatusNotFound, "message", v, message{Title: "Not found", Text: "There is no such page, or it belongs to another account."})
}

// pageURL is the portal's page path with the query of params (name,
// value pairs; empty values left out).
func (p *Portal) pageURL(path string, params ...string) string {
	vals := url.Values{}
	for i := 0; i+1 < len(params); i += 2 {
		if params[i+1] != "" {
			vals.Set(params[i], params[i+1])
		}
	}
	if len(vals) == 0 {
		return p.c.Path + path
	}
	return p.c.Path + path + "?" + vals.Encode()
}

// fault answers a failure that is not the visitor's, and logs it: the
// store or limiter is down (503), or anything unexpected (500). The log
// names the route's pattern, never the path: a customer may have pasted a
// key where an ID belongs.
func (p *Portal) fault(w http.ResponseWriter, r *http.Request, err error) {
	p.c.Logger.ErrorContext(r.Context(), "portal: request failed", "route", r.Pattern, "error", err)
	if errors.Is(err, keys.ErrUnavailable) {
		p.render(w, r, http.StatusServiceUnavailable, "message", nil, message{Title: "Unavailable", Text: "The service is unavailable for a moment. Try again shortly."})
		return
	}
	p.render(w, r, http.StatusInternalServerError, "message", nil, message{Title: "Something went wrong", Text: "The request failed. Try again shortly."})
}

// failed answers err for a page with no form to show it on: not found
// as 404, a refusal in words, the rest as fault does.
func (p *Portal) failed(w http.ResponseWriter, r *http.Request, v *visit, err error) {
	if errors.Is(err, keys.ErrNotFound) {
		p.notFound(w, r, v)
		return
	}
	var rl *keys.RateLimitError
	if errors.As(err, &rl) {
		w.Header().Set("Retry-After", strconv.Itoa(max(1, int(math.Ceil(rl.RateLimit.RetryAfter.Seconds())))))
	}
	if status, title, text, ok := refusal(err); ok {
		p.render(w, r, status, "message", v, message{Title: title, Text: text})
		return
	}
	p.fault(w, r, err)
}

// refusal is how a page says the Manager (or a limit) refused: its status,
// a title and the words; ok is false for anything else (a fault, not
// found).
func refusal(err error) (status int, title, text string, ok bool) {
	var ve *keys.ValidationError
	var pe *keys.PermissionError
	switch {
	case errors.As(err, &ve):
		return http.StatusBadRequest, "Not accepted", ve.Message, true
	case errors.As(err, &pe):
		return http.StatusForbidden, "Not allowed", pe.Message, true
	case errors.Is(err, keys.ErrPermissionDenied):
		return http.StatusForbidden, "Not allowed", "You may not do this.", true
	case errors.Is(err, keys.ErrIdempotencyConflict):
		return http.StatusConflict, "Already submitted", "This form was already submitted with other values. Open the form again.", true
	case errors.Is(err, keys.ErrRateLimited):
		return http.StatusTooManyRequests, "Too many requests", "Your account has loaded these pages too often this minute. Wait a moment and reload.", true
	case errors.Is(err, keys.ErrKeyLimit):
		return http.StatusForbidden, "Key limit reached", "Your account holds as many active keys as it may. Revoke one first.", true
	case errors.Is(err, keys.ErrWebhookLimit):
		return http.StatusForbidden, "Endpoint limit reached", "Your account has as many webhook endpoints as it may.", true
	}
	return 0, "", "", false
}

// form is a form's values as submitted, and its errors: Errors by field
// (shown next to it), General above the form.
type form struct {
	Values  map[string]string
	Checked map[string]bool
	Errors  map[string]string
	General string
	Nonce   string // the idempotency key of a form that creates
}

func newForm() *form {
	return &form{Values: map[string]string{}, Checked: map[string]bool{}, Errors: map[string]string{}}
}

// refuse puts err on the form: a validation error of one of fields
// next to it, any other refusal above the form. It reports false for
// what is no refusal (a fault, or not found), which the caller answers
// with failed.
func (f *form) refuse(err error, fields ...string) bool {
	var ve *keys.ValidationError
	if errors.As(err, &ve) {
		for _, name := range fields {
			if ve.Param == name || strings.HasPrefix(ve.Param, name+".") || strings.HasPrefix(ve.Param, name+"[") {
				f.Errors[name] = ve.Message
				return true
			}
		}
	}
	_, _, text, ok := refusal(err)
	f.General = text
	return ok
}

func errBadParam(param, msg string) error {
	return &keys.ValidationError{Param: param, Message: msg}
}
