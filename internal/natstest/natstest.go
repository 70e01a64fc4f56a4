// Package natstest runs a NATS server with JetStream in the test's
// process: loopback only, file storage in a folder of the test, and
// restartable on the same port and storage (to test that nothing is lost).
package natstest

import (
	"net"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Server is an in-process NATS server.
type Server struct {
	t    testing.TB
	opts server.Options
	*server.Server
}

// Start starts a server on 127.0.0.1 (a free port) with JetStream storing
// in a temporary folder; it is shut down when the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	s := &Server{t: t, opts: server.Options{Host: "127.0.0.1", Port: -1, JetStream: true,
		StoreDir: t.TempDir(), NoLog: true, NoSigs: true}}
	s.start()
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	return s
}

func (s *Server) start() {
	s.t.Helper()
	opts := s.opts
	srv, err := server.NewServer(&opts)
	if err != nil {
		s.t.Fatalf("natstest: %v", err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		s.t.Fatal("natstest: the NATS server did not start within 10s")
	}
	s.Server = srv
	// Later starts reuse the port the first one picked.
	if a, ok := srv.Addr().(*net.TCPAddr); ok {
		s.opts.Port = a.Port
	}
}

// URL is the client URL of the server.
func (s *Server) URL() string { return s.ClientURL() }

// Restart shuts the server down and starts it again on the same port with
// the same storage; clients reconnect by themselves.
func (s *Server) Restart() {
	s.t.Helper()
	s.Shutdown()
	s.WaitForShutdown()
	s.start()
}
