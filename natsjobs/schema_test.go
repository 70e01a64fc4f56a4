package natsjobs

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sdxl-go/sdxl/internal/natstest"
)

// TestSetupSurvivesRestart creates the stream and buckets twice (setup is
// idempotent) and finds a queued message after a server restart.
func TestSetupSurvivesRestart(t *testing.T) {
	srv := natstest.Start(t)
	nc, err := nats.Connect(srv.URL(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	n, err := NamesFor("")
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := Setup(ctx, js, n); err != nil {
			t.Fatal(err)
		}
	}
	for range 2 { // the same id twice: one message
		if _, err := js.Publish(ctx, n.JobSubject(ModelID("sdxl small/base")), []byte(`{}`), jetstream.WithMsgID("job1")); err != nil {
			t.Fatal(err)
		}
	}
	srv.Restart()
	for {
		info, err := js.Stream(ctx, n.Stream)
		if err == nil {
			si, err := info.Info(ctx)
			if err == nil {
				if si.State.Msgs != 1 {
					t.Fatalf("after restart: %d messages, want 1", si.State.Msgs)
				}
				if got := n.JobSubject(ModelID("sdxl small/base")); got != "sdxl.jobs.sdxl_small_base" {
					t.Fatalf("subject %q", got)
				}
				return
			}
		}
		if ctx.Err() != nil {
			t.Fatalf("stream not back after restart: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
