package webhook_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/txcloud/keys/webhook"
)

// A receiver checks each delivery before it acts on it: the signature
// under the endpoint's secret (shown once, when the endpoint was
// registered), and a timestamp within 5 minutes. Here a delivery is made
// by hand with Sign, as the library sends them.
func ExampleVerify() {
	secret := webhook.Secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		err := webhook.Verify(secret, r.Header.Get("webhook-id"), r.Header.Get("webhook-timestamp"), r.Header.Get("webhook-signature"), body, time.Now())
		if err != nil {
			fmt.Println("refused:", err)
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		fmt.Println("verified", r.Header.Get("webhook-id"))
		w.WriteHeader(http.StatusNoContent)
	}))
	defer receiver.Close()

	send := func(body string, sign webhook.Secret) {
		now := time.Now()
		sig, _ := webhook.Sign(sign, "evt_01", now, []byte(body))
		req, _ := http.NewRequest("POST", receiver.URL, strings.NewReader(body))
		req.Header.Set("webhook-id", "evt_01")
		req.Header.Set("webhook-timestamp", fmt.Sprint(now.Unix()))
		req.Header.Set("webhook-signature", sig)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
		}
	}
	send(`{"type":"key.revoked","timestamp":"2026-12-05T10:00:00Z","data":{"id":"key_1"}}`, secret)
	send(`{"type":"key.revoked","timestamp":"2026-12-05T10:00:00Z","data":{"id":"key_1"}}`, "whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
	// Output:
	// verified evt_01
	// refused: webhook: no valid signature
}

// The signature of the Standard Webhooks specification's test vector.
func ExampleSign() {
	sig, _ := webhook.Sign("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg_p5jXN8AQM9LWM0D4loKWxJek", time.Unix(1614265330, 0), []byte(`{"test": 2432232314}`))
	fmt.Println(sig)
	// Output: v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=
}
