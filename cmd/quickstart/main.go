// Command quickstart serves the keys demo on the in-memory store: the key
// endpoints under /v1, GET /v1/whoami and GET /v1/ping behind the key
// middleware, and a bootstrap key printed at start:
//
//	bootstrap key: txc_test_…
//
// It is the README's first command. It builds nothing outside the
// standard library, this module and its two dependencies (a test holds it
// to that), so it starts quickly on a machine with an empty build cache.
// cmd/keysdemo is the same server with SQLite, PostgreSQL, Redis and
// metrics besides; every flag here is one of its flags.
package main

import (
	"context"
	"flag"
	"io"
	"log/slog"
	"net"

	"github.com/txcloud/keys"
	"github.com/txcloud/keys/internal/demo"
	"github.com/txcloud/keys/memstore"
)

func main() { demo.Main("quickstart", run) }

// run serves until ctx is done. ready, if not nil, is told the address
// once the server listens.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, ready func(net.Addr)) error {
	fs := flag.NewFlagSet("quickstart", flag.ContinueOnError)
	fs.SetOutput(stderr)
	f := demo.AddFlags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	logger := slog.New(slog.NewTextHandler(stderr, nil))
	opts, err := f.ManagerOptions(logger)
	if err != nil {
		return err
	}
	m, err := keys.New(memstore.New(), opts...)
	if err != nil {
		return err
	}
	if err := f.Bootstrap(ctx, m, stdout); err != nil {
		return err
	}
	return f.Serve(ctx, m, logger, ready)
}
