package httpadapter

import (
	"net/http"
	"strconv"

	"github.com/txcloud/keys"
	"github.com/txcloud/keys/internal/httpjson"
	"github.com/txcloud/keys/reqlog"
)

// logReads is the group of the log endpoints in the management limit:
// they share WithUsageReadLimit's rate, counted apart from the usage
// reads.
const logReads = "logs"

// logs answers GET /developers/logs: a page of the account's request
// log, newest first.
func (a *Adapter) logs(w http.ResponseWriter, r *http.Request, as keys.Scoped) error {
	f, err := logFilter(r)
	if err != nil {
		return err
	}
	p, err := as.Logs(r.Context(), f)
	if err != nil {
		return err
	}
	return writeLarge(w, r, p)
}

// logEntry answers GET /developers/logs/{request_id}: one request's
// entry.
func (a *Adapter) logEntry(w http.ResponseWriter, r *http.Request, as keys.Scoped) error {
	if err := noParams(r); err != nil {
		return err
	}
	e, err := as.Log(r.Context(), r.PathValue("request_id"))
	if err != nil {
		return err
	}
	httpjson.Write(w, http.StatusOK, e)
	return nil
}

// logFilter reads the query of GET /developers/logs: start and end (RFC
// 3339), key_id, status (429, or a class such as 4xx), method, api,
// request_id, limit (1 to 100) and cursor, each at most once; any other
// parameter is an error.
func logFilter(r *http.Request) (reqlog.Filter, error) {
	var f reqlog.Filter
	err := eachParam(r.URL.Query(), func(name, v string) error {
		var err error
		switch name {
		case "start":
			f.Start, err = timeParam(name, v)
		case "end":
			f.End, err = timeParam(name, v)
		case "key_id":
			f.KeyID, err = textParam(name, v, 256)
		case "method":
			f.Method, err = textParam(name, v, 32)
		case "api":
			f.API, err = textParam(name, v, maxAPINameLen)
		case "request_id":
			f.RequestID, err = textParam(name, v, reqlog.MaxRequestIDLen)
		case "cursor":
			f.Cursor, err = textParam(name, v, 512)
		case "status":
			if f.Status, err = reqlog.ParseStatus(v); err != nil {
				return invalidParam("status", err.Error())
			}
		case "limit":
			f.Limit, err = limitParam(v)
		default:
			return invalidParam(paramName(name), "unknown query parameter")
		}
		return err
	})
	return f, err
}

// textParam is a non-empty parameter of at most n bytes.
func textParam(name, v string, n int) (string, error) {
	if v == "" || len(v) > n {
		return "", invalidParam(name, name+" must be 1 to "+strconv.Itoa(n)+" bytes")
	}
	return v, nil
}
