// Package natsjobstest starts a whole NATS deployment inside a test: an
// in-process JetStream server (internal/natstest), workers on given
// runners and a front end (natsjobs.Service), all stopped when the test
// ends. The server's tests run their API suite over it, and
// `sdxl-run batch --nats` its tests.
package natsjobstest

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/sdxl-go/sdxl/internal/natstest"
	"github.com/sdxl-go/sdxl/jobs"
	"github.com/sdxl-go/sdxl/natsjobs"
)

// Deployment is a running test deployment.
type Deployment struct {
	Server  *natstest.Server
	Service *natsjobs.Service
}

// Start starts a server, one worker per runner (with wcfg, its Logf
// defaulting to the test's log) and a front end with scfg; it returns
// once the workers are advertised.
func Start(t testing.TB, wcfg natsjobs.WorkerConfig, scfg natsjobs.ServiceConfig, runners ...*jobs.Runner) *Deployment {
	t.Helper()
	d := &Deployment{Server: natstest.Start(t)}
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{}, len(runners))
	for _, r := range runners {
		w, err := natsjobs.NewWorker(Connect(t, d.Server), r, wcfg)
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			if err := w.Run(ctx); err != nil {
				t.Logf("natsjobstest: worker: %v", err)
			}
			stopped <- struct{}{}
		}()
	}
	sctx, scancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer scancel()
	svc, err := natsjobs.NewService(sctx, Connect(t, d.Server), scfg)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	d.Service = svc
	t.Cleanup(func() {
		svc.Close(context.Background())
		cancel()
		for range runners {
			<-stopped
		}
	})
	for len(svc.Models()) == 0 {
		if sctx.Err() != nil {
			t.Fatal("natsjobstest: no worker advertised itself within 20s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	return d
}

// Connect is a client of s that reconnects for ever, closed when the
// test ends.
func Connect(t testing.TB, s *natstest.Server) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(s.URL(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}
