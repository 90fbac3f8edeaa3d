package modbus

// crcTable is the byte-wise lookup table of CRC-16/MODBUS
// (polynomial 0x8005 reflected as 0xA001, initial value 0xFFFF).
var crcTable = func() (t [256]uint16) {
	for i := range t {
		c := uint16(i)
		for range 8 {
			if c&1 != 0 {
				c = c>>1 ^ 0xA001
			} else {
				c >>= 1
			}
		}
		t[i] = c
	}
	return t
}()

// CRC16 returns the CRC-16/MODBUS of b. On the wire it is sent low byte
// first.
func CRC16(b []byte) uint16 {
	crc := uint16(0xFFFF)
	for _, x := range b {
		crc = crc>>8 ^ crcTable[byte(crc)^x]
	}
	return crc
}

// AppendCRC appends the CRC of b to b, low byte first, as Modbus RTU sends it.
func AppendCRC(b []byte) []byte {
	c := CRC16(b)
	return append(b, byte(c), byte(c>>8))
}

// CheckCRC reports whether the last two bytes of frame are the CRC of the
// bytes before them. Frames shorter than three bytes never check.
func CheckCRC(frame []byte) bool {
	if len(frame) < 3 {
		return false
	}
	n := len(frame) - 2
	c := CRC16(frame[:n])
	return frame[n] == byte(c) && frame[n+1] == byte(c>>8)
}
