package httpadapter

import (
	"net/http"
	"net/url"
	"time"

	"github.com/txcloud/keys"
	"github.com/txcloud/keys/usage"
)

// usage answers GET /developers/usage: the account's usage over a period
// (start and end, RFC 3339 whole minutes; by default the current UTC month
// to now), optionally of one key (key_id) or one API (api).
func (a *Adapter) usage(w http.ResponseWriter, r *http.Request, as keys.Scoped) error {
	var f usage.Filter
	err := eachParam(r.URL.Query(), func(name, v string) error {
		var err error
		switch name {
		case "start":
			f.Start, err = timeParam(name, v)
		case "end":
			f.End, err = timeParam(name, v)
		case "key_id":
			f.KeyID = v
		case "api":
			if len(v) > maxAPINameLen {
				return invalidParam("api", "api is an API's name, at most 256 bytes")
			}
			f.API = v
		default:
			return invalidParam(paramName(name), "unknown query parameter")
		}
		return err
	})
	if err != nil {
		return err
	}
	s, err := as.UsageSummary(r.Context(), f)
	if err != nil {
		return err
	}
	return writeLarge(w, r, s)
}

// keyUsage answers GET /developers/keys/{id}/usage: one key's usage in
// buckets (granularity minute, hour or day; hour by default), from start to
// end (by default the day of buckets up to the current one).
func (a *Adapter) keyUsage(w http.ResponseWriter, r *http.Request, as keys.Scoped) error {
	var start, end time.Time
	g := usage.Hour
	err := eachParam(r.URL.Query(), func(name, v string) error {
		var err error
		switch name {
		case "start":
			start, err = timeParam(name, v)
		case "end":
			end, err = timeParam(name, v)
		case "granularity":
			if g, err = usage.ParseGranularity(v); err != nil {
				return invalidParam("granularity", err.Error())
			}
		default:
			return invalidParam(paramName(name), "unknown query parameter")
		}
		return err
	})
	if err != nil {
		return err
	}
	s, err := as.KeyUsage(r.Context(), r.PathValue("id"), g, start, end) // never "" (the whole account): ServeMux matches no empty segment
	if err != nil {
		return err
	}
	return writeLarge(w, r, s)
}

// maxAPINameLen bounds the api filter.
const maxAPINameLen = 256

// eachParam calls fn with each query parameter, which must be given once.
func eachParam(q url.Values, fn func(name, v string) error) error {
	for name, vals := range q {
		if len(vals) != 1 {
			return invalidParam(paramName(name), "give "+paramName(name)+" once")
		}
		if err := fn(name, vals[0]); err != nil {
			return err
		}
	}
	return nil
}

func timeParam(name, v string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339, v)
	if err != nil || len(v) > 64 {
		return time.Time{}, invalidParam(name, name+" must be an RFC 3339 time, such as 2026-11-01T00:00:00Z")
	}
	return t, nil
}
