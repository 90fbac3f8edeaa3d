package main

// simCmd groups the simulators: the virtual PZEM-004T meter and the
// labelled dataset generator. Each subcommand lives in its own file.
type simCmd struct {
	Dataset simDatasetCmd `cmd:"" help:"Write a labelled readings CSV (nothing, laptop, solder, printer, 3d_printer and their combinations) from the load simulator."`
	Pzem    simPzemCmd    `cmd:"" help:"Virtual PZEM-004T meters on a pseudo-terminal (--pty), measuring simulated appliances and grid."`
}
