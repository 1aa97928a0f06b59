package httpadapter

import (
	"net/http"

	"github.com/txcloud/keys"
	"github.com/txcloud/keys/credits"
	"github.com/txcloud/keys/internal/httpjson"
)

// accountBody is GET /developers/account's answer: the plan's limits and
// the provider's budget, each null when there is none.
type accountBody struct {
	ID      string          `json:"id"`
	Plan    *planBody       `json:"plan"`
	Credits *credits.Budget `json:"credits"`
}

type planBody struct {
	Name       string `json:"name"`
	PerMinute  int    `json:"per_minute"`
	PerDay     int    `json:"per_day"`
	Concurrent int    `json:"concurrent"`
	MaxKeys    int    `json:"max_keys"`
}

// account answers GET /developers/account (the DevEx API's Account tag):
// the caller's account, its plan and its budget. The customer reads them;
// only the provider sets them (keys.WithPlans,
// keys.Manager.SetAccountCredits).
func (a *Adapter) account(w http.ResponseWriter, r *http.Request, as keys.Scoped) error {
	if err := eachParam(r.URL.Query(), func(name, _ string) error {
		return invalidParam(paramName(name), "unknown query parameter")
	}); err != nil {
		return err
	}
	acct, err := as.Account(r.Context())
	if err != nil {
		return err
	}
	body := accountBody{ID: acct.ID, Credits: acct.Credits}
	if p := acct.Plan; p != nil {
		body.Plan = &planBody{Name: p.Name, PerMinute: p.PerMinute, PerDay: p.PerDay, Concurrent: p.Concurrent, MaxKeys: p.MaxKeys}
	}
	httpjson.Write(w, http.StatusOK, body)
	return nil
}
