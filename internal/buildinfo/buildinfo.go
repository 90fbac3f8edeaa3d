// Package buildinfo reports what a binary is: version, commit, build date
// and Go version. Version, Commit and Date are set at link time:
//
//	go build -ldflags "-X loadwatch/internal/buildinfo.Version=v1.2.3 \
//	    -X loadwatch/internal/buildinfo.Commit=$(git rev-parse HEAD) \
//	    -X loadwatch/internal/buildinfo.Date=$(date -u +%FT%TZ)"
//
// Without them the module's build information fills in what it can.
package buildinfo

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// Set by -ldflags -X at build time.
var (
	Version = ""
	Commit  = ""
	Date    = ""
)

// Info describes one binary.
type Info struct {
	Name      string `json:"name"`
	Version   string `json:"version"`
	Commit    string `json:"commit"`
	Date      string `json:"date"`
	GoVersion string `json:"go_version"`
	Platform  string `json:"platform"`
}

// Get returns the build information of the running binary.
func Get(name string) Info {
	info := Info{
		Name:      name,
		Version:   Version,
		Commit:    Commit,
		Date:      Date,
		GoVersion: runtime.Version(),
		Platform:  runtime.GOOS + "/" + runtime.GOARCH,
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		if info.Version == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			info.Version = bi.Main.Version
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				if info.Commit == "" {
					info.Commit = s.Value
				}
			case "vcs.time":
				if info.Date == "" {
					info.Date = s.Value
				}
			}
		}
	}
	if info.Version == "" {
		info.Version = "dev"
	}
	if info.Commit == "" {
		info.Commit = "unknown"
	}
	if info.Date == "" {
		info.Date = "unknown"
	}
	return info
}

// String renders the one-line form printed by `version`.
func (i Info) String() string {
	return fmt.Sprintf("%s %s (commit %s, built %s, %s, %s)",
		i.Name, i.Version, i.Commit, i.Date, i.GoVersion, i.Platform)
}
