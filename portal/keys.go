package portal

import (
	"encoding/json"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/txcloud/keys"
)

// pageSize is how many keys a page of the list shows.
const pageSize = 20

// keyRow is a key as the list and its page show it.
type keyRow struct {
	keys.APIKey
	Status string
}

// keyStatus is a key's state in a word, the first that holds of revoked,
// expired, disabled (each refused by Verify now), retiring (rolled, in its
// grace period: it works until then) and active.
func keyStatus(k *keys.APIKey, now time.Time) string {
	switch {
	case k.RevokedAt != nil && !k.RevokedAt.After(now):
		return "revoked"
	case k.ExpiresAt != nil && !k.ExpiresAt.After(now):
		return "expired"
	case !k.Enabled:
		return "disabled"
	case k.RevokedAt != nil:
		return "retiring"
	}
	return "active"
}

// listRow is a key as a row of the list shows it: plain strings, made
// here once, so the template's work per row is escaping alone (a row was
// most of a page's cost).
type listRow struct {
	Href                                 template.URL // the key's page: the portal's path and the escaped ID
	Name, Prefix, Environment, Perms     string
	Status, Created, LastUsed, ExpiresAt string
}

func newListRow(base string, k *keys.APIKey, now time.Time) listRow {
	r := listRow{Href: template.URL(base + "/keys/" + url.PathEscape(k.ID)), Name: k.Name, Prefix: k.Prefix, Environment: string(k.Environment),
		Perms: strings.Join(k.Permissions, ", "), Status: keyStatus(k, now), Created: when(k.CreatedAt), LastUsed: "never", ExpiresAt: "never"}
	if r.Perms == "" {
		r.Perms = "none"
	}
	if k.LastUsed != nil {
		r.LastUsed = when(*k.LastUsed)
	}
	if k.ExpiresAt != nil {
		r.ExpiresAt = when(*k.ExpiresAt)
	}
	return r
}

type keyListPage struct {
	Keys        []listRow
	Environment string
	Status      string
	Filtered    bool
	NextURL     string
	FirstURL    string
	Envs        []string
}

func (p *Portal) keyList(w http.ResponseWriter, r *http.Request, v *visit) {
	q := r.URL.Query()
	f := keys.ListFilter{Limit: pageSize, Cursor: q.Get("cursor")}
	pg := keyListPage{Environment: q.Get("environment"), Status: q.Get("status"), Envs: envs(v)}
	switch pg.Environment {
	case "live", "test":
		f.Environment = keys.Environment(pg.Environment)
	case "":
	default:
		p.failed(w, r, v, errBadParam("environment", "environment is live or test"))
		return
	}
	switch pg.Status {
	case "active":
		f.Revoked = new(false)
	case "revoked":
		f.Revoked = new(true)
	case "":
	default:
		p.failed(w, r, v, errBadParam("status", "status is active or revoked"))
		return
	}
	list, err := v.as.List(r.Context(), f)
	if err != nil {
		p.failed(w, r, v, err)
		return
	}
	now := p.now()
	for i := range list.Data {
		pg.Keys = append(pg.Keys, newListRow(p.c.Path, &list.Data[i], now))
	}
	pg.Filtered = pg.Environment != "" || pg.Status != ""
	link := func(cursor string) string {
		return p.pageURL("/keys", "environment", pg.Environment, "status", pg.Status, "cursor", cursor)
	}
	if list.HasMore {
		pg.NextURL = link(list.NextCursor)
	}
	if f.Cursor != "" {
		pg.FirstURL = link("")
	}
	p.render(w, r, http.StatusOK, "keys", v, pg)
}

// envs are the environments the principal may create keys in.
func envs(v *visit) []string {
	if v.p.Environment != "" {
		return []string{string(v.p.Environment)}
	}
	return []string{"live", "test"}
}

// keyFormPage is the create form, and the edit form of a key's page.
type keyFormPage struct {
	Form  *form
	Perms []string // the permissions the principal may grant
	Envs  []string
	Plan  *keys.Plan
}

// grantable is the vocabulary the principal holds: what it may grant.
func (p *Portal) grantable(v *visit) []string {
	var out []string
	for _, perm := range p.m.Vocabulary() {
		if v.p.Has(perm) {
			out = append(out, perm)
		}
	}
	return out
}

func (p *Portal) keyFormPage(r *http.Request, v *visit, f *form) keyFormPage {
	pg := keyFormPage{Form: f, Perms: p.grantable(v), Envs: envs(v)}
	if a, err := v.as.Account(r.Context()); err == nil {
		pg.Plan = a.Plan
	}
	return pg
}

func (p *Portal) keyNew(w http.ResponseWriter, r *http.Request, v *visit) {
	f := newForm()
	f.Values["environment"] = envs(v)[0]
	f.Nonce = randomID()
	p.render(w, r, http.StatusOK, "keynew", v, p.keyFormPage(r, v, f))
}

// keyFields are the create form's fields, in the order errors are looked
// for.
var keyFields = []string{"name", "environment", "permissions", "rate_limit", "allowed_ips", "expires_at", "metadata"}

// readKeyForm reads the fields a create and an edit share into f, with
// an error on f for each it cannot read.
func readKeyForm(r *http.Request, f *form) (perms, ips []string, rate *int, expires *time.Time, meta json.RawMessage) {
	f.Values["name"] = r.PostFormValue("name")
	perms = r.PostForm["permissions"]
	for _, perm := range perms {
		f.Checked[perm] = true
	}
	f.Values["rate_limit"] = strings.TrimSpace(r.PostFormValue("rate_limit"))
	if s := f.Values["rate_limit"]; s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			f.Errors["rate_limit"] = "Give a whole number of requests per minute, or leave it empty."
		} else {
			rate = &n
		}
	}
	f.Values["allowed_ips"] = r.PostFormValue("allowed_ips")
	ips = strings.FieldsFunc(f.Values["allowed_ips"], func(c rune) bool { return c == ',' || c == '\n' || c == '\r' || c == ' ' || c == '\t' })
	f.Values["expires_at"] = strings.TrimSpace(r.PostFormValue("expires_at"))
	if s := f.Values["expires_at"]; s != "" {
		t, err := parseLocal(s)
		if err != nil {
			f.Errors["expires_at"] = "Give a date and time (UTC), as 2027-01-31T18:00, or leave it empty."
		} else {
			expires = &t
		}
	}
	f.Values["metadata"] = strings.TrimSpace(r.PostFormValue("metadata"))
	if s := f.Values["metadata"]; s != "" {
		meta = json.RawMessage(s) // the Manager checks it, and says why next to the field
	}
	return perms, ips, rate, expires, meta
}

// parseLocal reads a datetime-local field's value as UTC.
func parseLocal(s string) (time.Time, error) {
	for _, layout := range []string{"2006-01-02T15:04", "2006-01-02T15:04:05"} {
		if t, err := time.ParseInLocation(layout, s, time.UTC); err == nil {
			return t, nil
		}
	}
	return time.Parse(time.RFC3339, s)
}

func (p *Portal) keyCreate(w http.ResponseWriter, r *http.Request, v *visit) {
	f := newForm()
	nonce, idem, ok := p.formNonce(w, r)
	if !ok {
		return
	}
	f.Nonce = nonce
	f.Values["environment"] = r.PostFormValue("environment")
	perms, ips, rate, expires, meta := readKeyForm(r, f)
	if len(f.Errors) > 0 {
		p.render(w, r, http.StatusBadRequest, "keynew", v, p.keyFormPage(r, v, f))
		return
	}
	req := keys.APIKeyCreate{Name: f.Values["name"], Environment: keys.Environment(f.Values["environment"]), Permissions: perms,
		AllowedIPs: ips, RateLimit: rate, ExpiresAt: expires, Metadata: meta}
	created, err := v.as.Create(r.Context(), req, idem)
	if err != nil {
		if f.refuse(err, keyFields...) {
			p.render(w, r, http.StatusBadRequest, "keynew", v, p.keyFormPage(r, v, f))
			return
		}
		p.failed(w, r, v, err)
		return
	}
	p.showSecret(w, r, v, secretPage{Words: keyCreated, Name: created.Name, Secret: string(created.Key), Replayed: created.Replayed,
		Link: p.c.Path + "/keys/" + url.PathEscape(created.ID)})
}

// secretPage shows a secret once: a created or rolled key, or a webhook
// endpoint's signing secret. A replayed form (a reload, a second click)
// shows no secret: it was shown on the first answer.
type secretPage struct {
	Words    secretWording
	Name     string
	Secret   string
	Replayed bool
	Link     string
	Note     string // what else to know, beside the secret
}

// secretWording is what a secret's page calls things.
type secretWording struct {
	Title, Lead, Label, Nothing, Shown, Lost, LinkText string
}

// The wording of each kind of secret page.
var (
	keyCreated = secretWording{Title: "Key created", Lead: "The new key", Label: "API key", Nothing: "nothing new was created",
		Shown: "the key", Lost: "roll the key", LinkText: "Go to the key"}
	keyRolled = secretWording{Title: "Key rolled", Lead: "The new key", Label: "API key", Nothing: "nothing new was created",
		Shown: "the key", Lost: "roll the key", LinkText: "Go to the key"}
	endpointCreated = secretWording{Title: "Endpoint created", Lead: "The signing secret of", Label: "Signing secret", Nothing: "nothing new was created",
		Shown: "the signing secret", Lost: "roll the endpoint's secret", LinkText: "Go to the endpoint"}
	endpointSecretRolled = secretWording{Title: "Signing secret rolled", Lead: "The new signing secret of", Label: "Signing secret", Nothing: "the secret was not rolled again",
		Shown: "the new secret", Lost: "roll the endpoint's secret", LinkText: "Go to the endpoint"}
)

func (p *Portal) showSecret(w http.ResponseWriter, r *http.Request, v *visit, pg secretPage) {
	status := http.StatusCreated
	if pg.Replayed {
		status = http.StatusOK
	}
	p.render(w, r, status, "secret", v, pg)
}

// keyPage is a key's page: its details, the edit form, its actions.
type keyPage struct {
	Key      keyRow
	Edit     keyFormPage
	Notice   string
	Nonce    string // the roll form's idempotency key
	MaxGrace int    // the roll's longest grace, in hours
}

// The longest grace periods of a roll, in hours: the Manager's (a key's
// old secret works at most 7 days after a roll, an endpoint's old secret
// signs at most 24 hours), so that the form says them and refuses more
// in its own words.
const (
	keyGraceHours      = 7 * 24
	endpointGraceHours = 24
)

func (p *Portal) keyShow(w http.ResponseWriter, r *http.Request, v *visit) {
	k, err := v.as.Get(r.Context(), r.PathValue("id"))
	if err != nil {
		p.failed(w, r, v, err)
		return
	}
	f := newForm()
	f.Values["name"] = k.Name
	for _, perm := range k.Permissions {
		f.Checked[perm] = true
	}
	if k.RateLimit != nil {
		f.Values["rate_limit"] = strconv.Itoa(*k.RateLimit)
	}
	f.Values["allowed_ips"] = strings.Join(k.AllowedIPs, "\n")
	if k.ExpiresAt != nil {
		f.Values["expires_at"] = k.ExpiresAt.UTC().Format("2006-01-02T15:04")
	}
	if len(k.Metadata) > 0 {
		f.Values["metadata"] = string(k.Metadata)
	}
	notices := map[string]string{"saved": "Saved.", "enabled": "The key is enabled.", "disabled": "The key is disabled: requests with it are refused until you enable it.", "revoked": "The key is revoked."}
	p.renderKey(w, r, v, http.StatusOK, k, f, notices[r.URL.Query().Get("done")])
}

func (p *Portal) renderKey(w http.ResponseWriter, r *http.Request, v *visit, status int, k *keys.APIKey, f *form, notice string) {
	pg := keyPage{Key: keyRow{*k, keyStatus(k, p.now())}, Edit: p.keyFormPage(r, v, f), Notice: notice, Nonce: randomID(), MaxGrace: keyGraceHours}
	// A key may hold a permission the principal cannot grant: shown, not
	// offered to add.
	for _, perm := range k.Permissions {
		if !slices.Contains(pg.Edit.Perms, perm) {
			pg.Edit.Perms = append(pg.Edit.Perms, perm)
		}
	}
	p.render(w, r, status, "key", v, pg)
}

func (p *Portal) keyEdit(w http.ResponseWriter, r *http.Request, v *visit) {
	id := r.PathValue("id")
	k, err := v.as.Get(r.Context(), id)
	if err != nil {
		p.failed(w, r, v, err)
		return
	}
	f := newForm()
	perms, ips, rate, expires, meta := readKeyForm(r, f)
	if len(f.Errors) > 0 {
		p.renderKey(w, r, v, http.StatusBadRequest, k, f, "")
		return
	}
	// The form sends every field; only what changed goes to the Manager,
	// so a customer may rename a key holding a permission it does not
	// (an unchanged grant is no grant).
	u := keys.APIKeyUpdate{Name: keys.Change(f.Values["name"])}
	if !sameSet(perms, k.Permissions) {
		u.Permissions = keys.Change(append([]string{}, perms...))
	}
	if rate != nil {
		u.RateLimit = keys.Change(*rate)
	} else if k.RateLimit != nil {
		u.RateLimit = keys.Clear[int]()
	}
	if len(ips) > 0 {
		u.AllowedIPs = keys.Change(ips)
	} else if len(k.AllowedIPs) > 0 {
		u.AllowedIPs = keys.Clear[[]string]()
	}
	if expires != nil {
		u.ExpiresAt = keys.Change(*expires)
	} else if k.ExpiresAt != nil {
		u.ExpiresAt = keys.Clear[time.Time]()
	}
	if meta != nil {
		u.Metadata = keys.Change(meta)
	} else if len(k.Metadata) > 0 {
		u.Metadata = keys.Clear[json.RawMessage]()
	}
	if _, err := v.as.Update(r.Context(), id, u); err != nil {
		if f.refuse(err, keyFields...) {
			p.renderKey(w, r, v, http.StatusBadRequest, k, f, "")
			return
		}
		p.failed(w, r, v, err)
		return
	}
	p.doneKey(w, r, id, "saved")
}

// sameSet reports whether a and b hold the same strings.
func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(slices.Compact(a), slices.Compact(b))
}

func (p *Portal) doneKey(w http.ResponseWriter, r *http.Request, id, what string) {
	http.Redirect(w, r, p.c.Path+"/keys/"+url.PathEscape(id)+"?done="+what, http.StatusSeeOther)
}

func (p *Portal) keyEnable(w http.ResponseWriter, r *http.Request, v *visit) {
	p.setEnabled(w, r, v, true)
}

func (p *Portal) keyDisable(w http.ResponseWriter, r *http.Request, v *visit) {
	p.setEnabled(w, r, v, false)
}

func (p *Portal) setEnabled(w http.ResponseWriter, r *http.Request, v *visit, on bool) {
	id := r.PathValue("id")
	if _, err := v.as.Update(r.Context(), id, keys.APIKeyUpdate{Enabled: keys.Change(on)}); err != nil {
		p.failed(w, r, v, err)
		return
	}
	p.doneKey(w, r, id, map[bool]string{true: "enabled", false: "disabled"}[on])
}

func (p *Portal) keyRevokeConfirm(w http.ResponseWriter, r *http.Request, v *visit) {
	k, err := v.as.Get(r.Context(), r.PathValue("id"))
	if err != nil {
		p.failed(w, r, v, err)
		return
	}
	p.render(w, r, http.StatusOK, "revoke", v, keyRow{*k, keyStatus(k, p.now())})
}

func (p *Portal) keyRevoke(w http.ResponseWriter, r *http.Request, v *visit) {
	id := r.PathValue("id")
	if _, err := v.as.Revoke(r.Context(), id); err != nil {
		p.failed(w, r, v, err)
		return
	}
	p.doneKey(w, r, id, "revoked")
}

// rollForm reads a roll's form: its nonce (formNonce) and its grace
// period, a number of hours from 0 to maxHours; anything else (NaN and
// infinities included) is answered with a 400 here, and ok is false.
func (p *Portal) rollForm(w http.ResponseWriter, r *http.Request, v *visit, maxHours int) (idem keys.IssueOption, grace time.Duration, ok bool) {
	if _, idem, ok = p.formNonce(w, r); !ok {
		return keys.IssueOption{}, 0, false
	}
	hours, err := strconv.ParseFloat(strings.TrimSpace(r.PostFormValue("grace_hours")), 64)
	if err != nil || !(hours >= 0 && hours <= float64(maxHours)) {
		p.failed(w, r, v, errBadParam("grace_hours", fmt.Sprintf("The grace period is a number of hours from 0 to %d.", maxHours)))
		return keys.IssueOption{}, 0, false
	}
	return idem, time.Duration(hours * float64(time.Hour)).Round(time.Second), true
}

// keyRoll issues the key's successor, the old key working for the grace
// period given in hours.
func (p *Portal) keyRoll(w http.ResponseWriter, r *http.Request, v *visit) {
	id := r.PathValue("id")
	idem, grace, ok := p.rollForm(w, r, v, keyGraceHours)
	if !ok {
		return
	}
	created, err := v.as.Roll(r.Context(), id, grace, idem)
	if err != nil {
		p.failed(w, r, v, err)
		return
	}
	p.showSecret(w, r, v, secretPage{Words: keyRolled, Name: created.Name, Secret: string(created.Key), Replayed: created.Replayed,
		Link: p.c.Path + "/keys/" + url.PathEscape(created.ID)})
}
