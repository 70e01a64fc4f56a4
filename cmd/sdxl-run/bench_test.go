package main

import (
	"strings"
	"testing"
)

func TestBenchFlags(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"bench"}, "--random-weights"},
		{[]string{"bench", "--random-weights", "--size", "100"}, "multiple of 8"},
		{[]string{"bench", "--random-weights", "--device", "tpu"}, "--device"},
	} {
		code, _, stderr := runCLI(t, c.args...)
		if code != 2 || !strings.Contains(stderr, c.want) {
			t.Errorf("%v: exit %d, %q; want exit 2 and %q", c.args, code, stderr, c.want)
		}
	}
}
