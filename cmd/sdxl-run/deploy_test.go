package main

import (
	"bufio"
	"flag"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestDeployUnits: every `sdxl-run` command line of the systemd units in
// deploy/systemd parses with the command's flags and passes its checks
// (the environment files' values filled in), so the examples cannot rot.
func TestDeployUnits(t *testing.T) {
	env := map[string]string{}
	for _, f := range []string{"sdxl-worker.env", "sdxl-serve.env"} {
		readEnv(t, filepath.Join("..", "..", "deploy", "systemd", f), env)
	}
	units, _ := filepath.Glob(filepath.Join("..", "..", "deploy", "systemd", "*.service"))
	seen := map[string]bool{}
	for _, u := range units {
		for _, line := range execLines(t, u) {
			args := strings.Fields(os.Expand(line, func(k string) string { return env[k] }))
			if len(args) < 2 || filepath.Base(args[0]) != "sdxl-run" {
				continue
			}
			seen[args[1]] = true
			if err := checkCommand(args[1], args[2:]); err != nil {
				t.Errorf("%s: %s: %v", filepath.Base(u), line, err)
			}
		}
	}
	if !seen["worker"] || !seen["serve"] {
		t.Errorf("the units run %v, want worker and serve", seen)
	}
}

// checkCommand parses a command's flags and runs its checks (no model or
// server is opened).
func checkCommand(cmd string, args []string) error {
	switch cmd {
	case "worker":
		var f workerFlags
		fs := newWorkerFlags(&f, io.Discard)
		if err := fs.Parse(args); err != nil {
			return err
		}
		// The model paths are the operator's: only the flags' form counts.
		f.model, f.refiner, f.loraDir = "", "", ""
		return f.check(fs)
	case "serve":
		var f serveFlags
		fs := newServeFlags(&f, io.Discard)
		if err := fs.Parse(args); err != nil {
			return err
		}
		return f.check(fs)
	}
	return flag.ErrHelp
}

var execStart = regexp.MustCompile(`^ExecStart=(.*)$`)

func execLines(t *testing.T, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if m := execStart.FindStringSubmatch(sc.Text()); m != nil {
			out = append(out, m[1])
		}
	}
	return out
}

func readEnv(t *testing.T, path string, env map[string]string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(line, "#") {
			env[k] = v
		}
	}
}
