// Command shop-interop is the Go (grpc-go) runner of the interop suite: it executes every case
// of a case file against the targets a JSON file names and prints one line per case.
package main

import (
	"crypto/rand"
	"encoding/hex"
	"flag"
	"fmt"
	"os"

	"example.com/shopmesh/clients/go/interop"
)

func main() {
	casesPath := flag.String("cases", "", "case file (tests/interop/*.json)")
	targetsPath := flag.String("targets", "", "targets file")
	flag.Parse()
	if *casesPath == "" || *targetsPath == "" {
		fmt.Fprintln(os.Stderr, "usage: shop-interop --cases FILE --targets FILE")
		os.Exit(2)
	}
	cases, err := interop.LoadCases(*casesPath)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	targets, err := interop.LoadTargets(*targetsPath)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	runner := interop.NewRunner(targets)
	defer runner.Close()
	id := make([]byte, 4)
	_, _ = rand.Read(id)
	passed := 0
	for _, c := range cases {
		if err := runner.RunCase(c, hex.EncodeToString(id)); err != nil {
			fmt.Printf("FAIL %s: %v\n", c.ID, err)
			continue
		}
		passed++
		fmt.Printf("ok %s\n", c.ID)
	}
	fmt.Printf("interop: %d/%d cases passed\n", passed, len(cases))
	if passed != len(cases) {
		runner.Close()
		os.Exit(1)
	}
}
