// Command sdxl-run generates images with Stable Diffusion XL. For now it
// provides only the tokenize subcommand:
//
//	sdxl-run tokenize [--model PATH] TEXT
//
// prints the ids both SDXL text encoders receive for TEXT as one JSON object.
package main

import (
	"fmt"
	"io"
	"os"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run dispatches on the subcommand and returns the exit status.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "tokenize" {
		return runTokenize(args[1:], stdout, stderr)
	}
	fmt.Fprintln(stderr, "sdxl-run: not implemented yet (available: sdxl-run tokenize [--model PATH] TEXT)")
	return 2
}
