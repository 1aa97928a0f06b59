package portal

import (
	"errors"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/txcloud/keys"
	"github.com/txcloud/keys/internal/sentinel"
	"github.com/txcloud/keys/reqlog"
)

// logPageSize is how many requests a page of the log shows.
const logPageSize = 50

// logListPage is the request log: the account's requests, newest first,
// filtered by key, status and time.
type logListPage struct {
	Form     *form
	Entries  []reqlog.Entry
	NextURL  string
	FirstURL string
	Filtered bool
	NotKept  bool
}

// logFields are the log filter's fields.
var logFields = []string{"key_id", "status", "start", "end", "request_id", "cursor"}

func (p *Portal) logList(w http.ResponseWriter, r *http.Request, v *visit) {
	q := r.URL.Query()
	if id := strings.TrimSpace(q.Get("request_id")); id != "" {
		http.Redirect(w, r, p.c.Path+"/logs/"+url.PathEscape(id), http.StatusSeeOther)
		return
	}
	f := newForm()
	pg := logListPage{Form: f}
	filter := reqlog.Filter{Limit: logPageSize, Cursor: q.Get("cursor")}
	for _, name := range []string{"key_id", "status", "start", "end"} {
		f.Values[name] = strings.TrimSpace(q.Get(name))
		pg.Filtered = pg.Filtered || f.Values[name] != ""
	}
	filter.KeyID = f.Values["key_id"]
	if s := f.Values["status"]; s != "" {
		st, err := reqlog.ParseStatus(s)
		if err != nil {
			f.Errors["status"] = "A status is a code, as 429, or a class, as 4xx."
		}
		filter.Status = st
	}
	for name, t := range map[string]*time.Time{"start": &filter.Start, "end": &filter.End} {
		if s := f.Values[name]; s != "" {
			var err error
			if *t, err = parseLocal(s); err != nil {
				f.Errors[name] = "Give a date and time (UTC), as 2026-12-05T18:00."
			}
		}
	}
	if len(f.Errors) > 0 {
		p.render(w, r, http.StatusBadRequest, "logs", v, pg)
		return
	}
	page, err := v.as.Logs(r.Context(), filter)
	switch {
	case errors.Is(err, sentinel.ErrLogsNotKept):
		pg.NotKept = true
		p.render(w, r, http.StatusOK, "logs", v, pg)
		return
	case err != nil:
		if f.refuse(err, logFields...) {
			p.render(w, r, http.StatusBadRequest, "logs", v, pg)
			return
		}
		p.failed(w, r, v, err)
		return
	}
	pg.Entries = page.Data
	link := func(cursor string) string {
		return p.pageURL("/logs", "key_id", f.Values["key_id"], "status", f.Values["status"], "start", f.Values["start"], "end", f.Values["end"], "cursor", cursor)
	}
	if page.HasMore {
		pg.NextURL = link(page.NextCursor)
	}
	if filter.Cursor != "" {
		pg.FirstURL = link("")
	}
	p.render(w, r, http.StatusOK, "logs", v, pg)
}

func (p *Portal) logShow(w http.ResponseWriter, r *http.Request, v *visit) {
	e, err := v.as.Log(r.Context(), r.PathValue("request_id"))
	if errors.Is(err, sentinel.ErrLogsNotKept) {
		p.render(w, r, http.StatusOK, "logs", v, logListPage{Form: newForm(), NotKept: true})
		return
	}
	if err != nil {
		var ve *keys.ValidationError
		if errors.As(err, &ve) { // a malformed ID is no request of the account's
			err = keys.ErrNotFound
		}
		p.failed(w, r, v, err)
		return
	}
	p.render(w, r, http.StatusOK, "log", v, e)
}
