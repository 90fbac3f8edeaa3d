// Package serialport opens serial ports for the Modbus link. It is the only
// package that imports go.bug.st/serial.
package serialport

import (
	"errors"
	"fmt"
	"os"

	"go.bug.st/serial"
)

// Port is an open serial port. It satisfies modbus.Port and io.Closer.
type Port struct {
	serial.Port
	path string
}

// Path returns the device path the port was opened with.
func (p *Port) Path() string { return p.path }

// ErrNotExist means the device path does not exist. errors.Is with
// os.ErrNotExist holds too.
var ErrNotExist = os.ErrNotExist

// Open opens path at 9600 baud, 8 data bits, no parity, one stop bit (the
// PZEM-004T's only setting), in raw mode, exclusively.
func Open(path string) (*Port, error) {
	if path == "" {
		return nil, errors.New("serialport: no port given (e.g. --port /dev/ttyUSB0)")
	}
	if _, err := os.Stat(path); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("serialport: %s does not exist (is the adapter plugged in? list ports with ls /dev/ttyUSB* /dev/ttyAMA* /dev/serial*): %w", path, err)
		}
		return nil, fmt.Errorf("serialport: %s: %w", path, err)
	}
	p, err := serial.Open(path, &serial.Mode{BaudRate: 9600, DataBits: 8, Parity: serial.NoParity, StopBits: serial.OneStopBit})
	if err != nil {
		var pe *serial.PortError
		if errors.As(err, &pe) {
			switch pe.Code() {
			case serial.PermissionDenied:
				return nil, fmt.Errorf("serialport: %s: permission denied (add yourself to the dialout group): %w", path, err)
			case serial.PortBusy:
				return nil, fmt.Errorf("serialport: %s is busy (another program has it open): %w", path, err)
			}
		}
		return nil, fmt.Errorf("serialport: open %s: %w", path, err)
	}
	return &Port{Port: p, path: path}, nil
}
