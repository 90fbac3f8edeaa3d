package outbox

import (
	"encoding/binary"
	"errors"
	"hash/crc32"
)

// On-disk record layout (little endian):
//
//	offset 0  uint32  body length n (bytes after this 8-byte header)
//	offset 4  uint32  CRC-32C (Castagnoli) of the body
//	offset 8  body:   uint64 seq | uint8 epoch length e | epoch (e bytes) | payload
//
// A record is valid only when its whole body is present and the CRC
// matches; anything else at the end of a segment is a torn write.

const headerLen = 8

// MaxRecord is the largest body accepted (payload plus 9 + epoch bytes).
const MaxRecord = 1 << 20

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

var (
	errShort   = errors.New("outbox: record truncated")
	errCorrupt = errors.New("outbox: record corrupt")
)

// appendRecord appends the encoding of one record to b.
func appendRecord(b []byte, seq uint64, epoch string, payload []byte) []byte {
	n := 8 + 1 + len(epoch) + len(payload)
	start := len(b)
	b = binary.LittleEndian.AppendUint32(b, uint32(n))
	b = binary.LittleEndian.AppendUint32(b, 0)
	b = binary.LittleEndian.AppendUint64(b, seq)
	b = append(b, byte(len(epoch)))
	b = append(b, epoch...)
	b = append(b, payload...)
	binary.LittleEndian.PutUint32(b[start+4:], crc32.Checksum(b[start+headerLen:], castagnoli))
	return b
}

// decodeRecord decodes the record at the start of b. It returns the record
// (payload and epoch alias b), the bytes it used, and errShort when b ends
// inside the record or errCorrupt when it cannot be a valid record.
func decodeRecord(b []byte) (seq uint64, epoch, payload []byte, n int, err error) {
	if len(b) < headerLen {
		return 0, nil, nil, 0, errShort
	}
	size := binary.LittleEndian.Uint32(b)
	if size < 9 || size > MaxRecord {
		return 0, nil, nil, 0, errCorrupt
	}
	if uint64(len(b)-headerLen) < uint64(size) {
		return 0, nil, nil, 0, errShort
	}
	body := b[headerLen : headerLen+int(size)]
	if crc32.Checksum(body, castagnoli) != binary.LittleEndian.Uint32(b[4:]) {
		return 0, nil, nil, 0, errCorrupt
	}
	seq = binary.LittleEndian.Uint64(body)
	e := int(body[8])
	if 9+e > len(body) {
		return 0, nil, nil, 0, errCorrupt
	}
	return seq, body[9 : 9+e], body[9+e:], headerLen + int(size), nil
}
