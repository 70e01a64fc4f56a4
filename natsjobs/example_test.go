package natsjobs_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sdxl-go/sdxl/backend/cpu"
	"github.com/sdxl-go/sdxl/jobs"
	"github.com/sdxl-go/sdxl/jobspec"
	"github.com/sdxl-go/sdxl/natsjobs"
	"github.com/sdxl-go/sdxl/sdxl"
	"github.com/sdxl-go/sdxl/sdxl/bundled"
)

// A worker takes a job published to the stream, stores its image and
// records it done; the job's progress subject carries its final status.
func ExampleWorker() {
	// A NATS server with JetStream (in production: nats-server -js).
	store, _ := os.MkdirTemp("", "nats")
	defer os.RemoveAll(store)
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: store, NoLog: true, NoSigs: true})
	if err != nil {
		fmt.Println(err)
		return
	}
	go ns.Start()
	defer ns.Shutdown()
	ns.ReadyForConnections(10 * time.Second)
	nc, err := nats.Connect(ns.ClientURL(), nats.MaxReconnects(-1))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer nc.Close()

	// The worker: a runner over an engine (here the bundled small model).
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	dir, _ := bundled.Dir()
	e, err := sdxl.Open(ctx, sdxl.Options{Backend: cpu.New(), Base: dir, MemoryBudget: -1})
	if err != nil {
		fmt.Println(err)
		return
	}
	r := jobs.NewRunner(ctx, e, jobs.RunnerOptions{BaseName: bundled.Name})
	w, err := natsjobs.NewWorker(nc, r, natsjobs.WorkerConfig{})
	if err != nil {
		fmt.Println(err)
		return
	}
	ran := make(chan error, 1)
	go func() { ran <- w.Run(ctx) }()

	// A front end's part: follow the job, then publish it (its id the
	// message id) on its model's subject.
	names, _ := natsjobs.NamesFor("")
	progress, _ := nc.SubscribeSync(names.ProgressSubject("job1"))
	js, _ := jetstream.New(nc)
	spec := jobspec.New(jobspec.Native)
	spec.Prompt, spec.Width, spec.Height, spec.Steps, spec.Seed = "a red cube", 64, 64, 2, 7
	data, _ := json.Marshal(spec)
	for { // the stream exists once the worker has set up
		_, err := js.Publish(ctx, names.JobSubject(w.Model()), data, jetstream.WithMsgID("job1"))
		if err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	for {
		m, err := progress.NextMsg(time.Minute)
		if err != nil {
			fmt.Println(err)
			return
		}
		var p natsjobs.ProgressMsg
		if json.Unmarshal(m.Data, &p) == nil && p.Status.State.Finished() {
			fmt.Println(w.Model(), p.Status.State, p.Status.Images[0].URL)
			break
		}
	}
	stop()
	fmt.Println(<-ran)
	// Output:
	// sdxl-small-base done /v1/jobs/job1/images/0.png
	// <nil>
}
