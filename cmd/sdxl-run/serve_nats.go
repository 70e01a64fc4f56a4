package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/sdxl-go/sdxl/natsjobs"
	"github.com/sdxl-go/sdxl/server"
)

// modelFlagNames are the flags that load a model: a front end over NATS
// loads none (its workers do).
var modelFlagNames = []string{"model", "config", "refiner", "variant", "device", "dtype", "lora-dir", "offload"}

// checkNATS validates serve's NATS flags: with --nats no model flag and
// no --output-dir (the images live in JetStream).
func (f *serveFlags) checkNATS(fs *flag.FlagSet) error {
	if f.nats == "" {
		if f.modelID != "" || f.prefix != "" {
			return usageErr("--model-id and --prefix go with --nats")
		}
		return nil
	}
	if f.outputDir != "" {
		return usageErr("--output-dir with --nats: the images are kept in the NATS object store (use `sdxl-run batch --nats` to collect them)")
	}
	return checkFrontEnd(fs, f.modelID, f.prefix)
}

// checkFrontEnd validates the flags of a command that works through NATS
// workers (serve and batch with --nats): no model flag, a valid model id
// and prefix.
func checkFrontEnd(fs *flag.FlagSet, modelID, prefix string) error {
	var set []string
	fs.Visit(func(fl *flag.Flag) {
		for _, n := range modelFlagNames {
			if fl.Name == n {
				set = append(set, "--"+n)
			}
		}
	})
	if len(set) > 0 {
		return usageErr("%s with --nats: a front end over NATS loads no model; give the models to `sdxl-run worker`", strings.Join(set, ", "))
	}
	if modelID != "" && natsjobs.ModelID(modelID) != modelID {
		return usageErr("--model-id %q: use letters, digits, '-' and '_'", modelID)
	}
	if _, err := natsjobs.NamesFor(prefix); err != nil {
		return usageErr("--prefix %q: use letters, digits, '-' and '_'", prefix)
	}
	return nil
}

// connectNATS connects to the NATS server at url as name, reconnecting
// for ever (a server restart loses nothing) and logging the disconnects.
func connectNATS(url, name string, logger *log.Logger) (*nats.Conn, error) {
	nc, err := nats.Connect(url, nats.Name(name), nats.MaxReconnects(-1),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil { // nil: our own Close
				logger.Printf("disconnected from %s: %v", url, err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) { logger.Printf("reconnected to %s", nc.ConnectedUrlRedacted()) }))
	if err != nil {
		return nil, fmt.Errorf("--nats %s: cannot connect: %v", url, err)
	}
	return nc, nil
}

// startNATS connects to NATS and makes the front end's job service; the
// models and LoRAs it lists are the live workers'.
func (f *serveFlags) startNATS(ctx context.Context, stderr io.Writer) (server.Config, func(), error) {
	logger := log.New(stderr, "sdxl-run serve: ", log.LstdFlags)
	nc, err := connectNATS(f.nats, "sdxl-run serve", logger)
	if err != nil {
		return server.Config{}, nil, err
	}
	names, _ := natsjobs.NamesFor(f.prefix)
	c, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	svc, err := natsjobs.NewService(c, nc, natsjobs.ServiceConfig{Names: names, Model: f.modelID, MaxQueue: f.maxQueue,
		Keep: f.keep, Logf: logger.Printf})
	if err != nil {
		nc.Close()
		return server.Config{}, nil, fmt.Errorf("--nats %s: %v", f.nats, err)
	}
	models := func() []server.Model {
		var out []server.Model
		for _, m := range svc.Models() {
			out = append(out, server.Model{Role: m.Role, Name: m.Name, File: m.File, Hash: m.Hash, SHA256: m.SHA256})
		}
		return out
	}
	loras := func() ([]server.LoRAFile, error) {
		var out []server.LoRAFile
		for _, n := range svc.LoRAs() {
			out = append(out, server.LoRAFile{Name: n})
		}
		return out, nil
	}
	n := len(svc.Models())
	fmt.Fprintf(stderr, "sdxl-run serve: front end of %s (stream %s): %d models of live workers\n", f.nats, names.Stream, n)
	return server.Config{Jobs: svc, Models: models, LoRAs: loras}, nc.Close, nil
}
