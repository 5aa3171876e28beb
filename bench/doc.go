// Package bench holds trustgate's measurements: the hot-path
// micro-benchmarks in this directory (go test -bench . ./bench/), the load
// generator (bench/load, bench/loadgen), the floor server (bench/floor),
// the scenario harness behind `make bench` (bench/scenarios) and, in its
// own Go module, the anchor (bench/anchor).
package bench
