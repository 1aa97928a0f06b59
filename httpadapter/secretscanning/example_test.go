package secretscanning_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http/httptest"

	"github.com/txcloud/keys"
	"github.com/txcloud/keys/httpadapter"
	"github.com/txcloud/keys/httpadapter/secretscanning"
	"github.com/txcloud/keys/memstore"
)

// Receive GitHub's alert of a leaked key: the key is revoked, and GitHub
// hears it was a true positive. (GitHub signs with its own key; the
// example makes one.)
func ExampleNew() {
	ctx := context.Background()
	m, _ := keys.New(memstore.New())
	defer m.Close(ctx)
	k, _ := m.Create(ctx, keys.APIKeyCreate{Name: "pushed", Environment: keys.Live, AccountID: "acct_1"})

	github, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKIXPublicKey(&github.PublicKey)
	meta, _ := json.Marshal(map[string]any{"public_keys": []map[string]any{{"key_identifier": "kid-1",
		"key": string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))}}})
	pub, _ := secretscanning.ParsePublicKeys(meta) // GitHub's public-key endpoint serves this JSON

	a := httpadapter.New(m)
	h := secretscanning.New(m, pub, keys.LeakRevoke, a.WriteError)

	body, _ := json.Marshal([]map[string]string{{"token": string(k.Key), "type": "txcloud_api_key", "url": "https://github.com/acme/app", "source": "content"}})
	sum := sha256.Sum256(body)
	sig, _ := ecdsa.SignASN1(rand.Reader, github, sum[:])
	req := httptest.NewRequest("POST", "/secret-scanning/github", bytes.NewReader(body))
	req.Header.Set("Github-Public-Key-Identifier", "kid-1")
	req.Header.Set("Github-Public-Key-Signature", base64.StdEncoding.EncodeToString(sig))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)

	var feedback []struct{ Label string }
	_ = json.Unmarshal(rec.Body.Bytes(), &feedback)
	fmt.Println(rec.Code, feedback[0].Label)
	_, err := m.Verify(ctx, string(k.Key))
	fmt.Println(errors.Is(err, keys.ErrKeyRevoked))
	// Output:
	// 200 true_positive
	// true
}
