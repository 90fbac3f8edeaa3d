package main

// simCmd groups the simulators: the virtual PZEM-004T meter and the
// labelled dataset generator. Each subcommand lives in its own file.
type simCmd struct {
}
