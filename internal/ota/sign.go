package ota

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"aead.dev/minisign"
)

// Signature errors, checked with errors.Is.
var (
	ErrUnsigned     = errors.New("ota: no signature")
	ErrBadSignature = errors.New("ota: signature does not verify")
	ErrUnknownKey   = errors.New("ota: signed by a key that is not pinned")
	ErrBadKey       = errors.New("ota: malformed key")
)

// Algorithm names the two minisign signature kinds.
type Algorithm uint16

const (
	// Legacy is minisign's "Ed": Ed25519 over the whole message
	// (minisign -l). Verifying it needs the whole message in memory.
	Legacy Algorithm = Algorithm(minisign.EdDSA)
	// Prehashed is minisign's default "ED": Ed25519 over the message's
	// BLAKE2b-512 digest; verified while streaming.
	Prehashed Algorithm = Algorithm(minisign.HashEdDSA)
)

func (a Algorithm) String() string {
	switch a {
	case Legacy:
		return "Ed"
	case Prehashed:
		return "ED"
	}
	return fmt.Sprintf("Algorithm(%#04x)", uint16(a))
}

// PublicKey is a minisign Ed25519 public key.
type PublicKey struct{ k minisign.PublicKey }

// SecretKey is a minisign Ed25519 secret key, decrypted.
type SecretKey struct{ k minisign.PrivateKey }

// ID is the key's 64-bit minisign key id in the upper-case hex form the
// minisign tool prints.
func (p PublicKey) ID() string { return fmt.Sprintf("%016X", p.k.ID()) }

// String is the one-line base64 form (minisign -P accepts it).
func (p PublicKey) String() string { return p.k.String() }

// MarshalText writes the minisign public key file format.
func (p PublicKey) MarshalText() ([]byte, error) {
	b, err := p.k.MarshalText()
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// ParsePublicKey reads a minisign public key: the two-line file written
// by keygen or `minisign -G`, or the bare base64 line.
func ParsePublicKey(text []byte) (PublicKey, error) {
	var k minisign.PublicKey
	if err := k.UnmarshalText(bytes.TrimSpace(text)); err != nil {
		return PublicKey{}, fmt.Errorf("%w: %w", ErrBadKey, err)
	}
	return PublicKey{k}, nil
}

// Public returns the public half of s.
func (s SecretKey) Public() PublicKey { return PublicKey{s.k.Public().(minisign.PublicKey)} }

// ID is the key id, as PublicKey.ID.
func (s SecretKey) ID() string { return s.Public().ID() }

// GenerateKey makes a new key pair from rand (nil: crypto/rand).
func GenerateKey(rand io.Reader) (PublicKey, SecretKey, error) {
	pub, sec, err := minisign.GenerateKey(rand)
	if err != nil {
		return PublicKey{}, SecretKey{}, fmt.Errorf("ota: generate key: %w", err)
	}
	return PublicKey{pub}, SecretKey{sec}, nil
}

// MarshalSecretKey writes the minisign secret key file format. With an
// empty password the key is stored unencrypted (as `minisign -G -W`);
// otherwise it is encrypted with scrypt exactly as the minisign tool does
// (libsodium's "sensitive" cost: about 1 GiB of memory and a few seconds).
func MarshalSecretKey(s SecretKey, password string) ([]byte, error) {
	var (
		b   []byte
		err error
	)
	if password == "" {
		b, err = s.k.MarshalText()
	} else {
		b, err = minisign.EncryptKey(password, s.k)
	}
	if err != nil {
		return nil, fmt.Errorf("ota: encode secret key: %w", err)
	}
	return append(b, '\n'), nil
}

// SecretKeyEncrypted reports whether a secret key file needs a password.
func SecretKeyEncrypted(text []byte) bool { return minisign.IsEncrypted(bytes.TrimSpace(text)) }

// ParseSecretKey reads a minisign secret key file. password is called only
// when the key is encrypted.
func ParseSecretKey(text []byte, password func() (string, error)) (SecretKey, error) {
	text = bytes.TrimSpace(text)
	if minisign.IsEncrypted(text) {
		if password == nil {
			return SecretKey{}, fmt.Errorf("%w: secret key is encrypted and no password was given", ErrBadKey)
		}
		pw, err := password()
		if err != nil {
			return SecretKey{}, fmt.Errorf("ota: read password: %w", err)
		}
		k, err := minisign.DecryptKey(pw, text)
		if err != nil {
			return SecretKey{}, fmt.Errorf("%w: decrypt secret key (wrong password?): %w", ErrBadKey, err)
		}
		return SecretKey{k}, nil
	}
	var k minisign.PrivateKey
	if err := k.UnmarshalText(text); err != nil {
		return SecretKey{}, fmt.Errorf("%w: %w", ErrBadKey, err)
	}
	return SecretKey{k}, nil
}

// Sign signs everything read from r with the prehashed algorithm
// (minisign's default, "ED") and returns the .minisig text. The trusted
// comment is covered by the signature; it must be a single line.
func Sign(s SecretKey, r io.Reader, trustedComment string) ([]byte, error) {
	if strings.ContainsAny(trustedComment, "\r\n") {
		return nil, errors.New("ota: trusted comment must be one line")
	}
	mr := minisign.NewReader(r)
	if _, err := io.Copy(io.Discard, mr); err != nil {
		return nil, fmt.Errorf("ota: sign: read message: %w", err)
	}
	return mr.SignWithComments(s.k, trustedComment, untrusted(s)), nil
}

// SignLegacy signs msg with minisign's legacy non-prehashed algorithm
// ("Ed", minisign -l). Verification accepts both kinds.
func SignLegacy(s SecretKey, msg []byte, trustedComment string) ([]byte, error) {
	if strings.ContainsAny(trustedComment, "\r\n") {
		return nil, errors.New("ota: trusted comment must be one line")
	}
	return minisign.SignWithComments(s.k, msg, trustedComment, untrusted(s)), nil
}

func untrusted(s SecretKey) string { return "signature from loadwatch ota key " + s.ID() }

// SigInfo is what a verified signature tells.
type SigInfo struct {
	KeyID          string
	Algorithm      Algorithm
	TrustedComment string
}

// Keyring is the set of pinned public keys a verifier accepts (more than
// one during a key rotation).
type Keyring []PublicKey

// ReadKeyring reads one public key file (see ParsePublicKey) per path. A
// key that does not parse is reported with its path.
func ReadKeyring(paths ...string) (Keyring, error) {
	var kr Keyring
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		k, err := ParsePublicKey(b)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		kr = append(kr, k)
	}
	return kr, nil
}

func (kr Keyring) find(id uint64) (PublicKey, bool) {
	for _, k := range kr {
		if k.k.ID() == id {
			return k, true
		}
	}
	return PublicKey{}, false
}

// parseSig decodes a .minisig text and finds its key in kr.
func (kr Keyring) parseSig(sig []byte) (minisign.Signature, PublicKey, error) {
	var s minisign.Signature
	if len(bytes.TrimSpace(sig)) == 0 {
		return s, PublicKey{}, ErrUnsigned
	}
	if err := s.UnmarshalText(sig); err != nil {
		return s, PublicKey{}, fmt.Errorf("%w: %w", ErrBadSignature, err)
	}
	k, ok := kr.find(s.KeyID)
	if !ok {
		return s, PublicKey{}, fmt.Errorf("%w: key id %016X", ErrUnknownKey, s.KeyID)
	}
	return s, k, nil
}

// Verify checks sig (a .minisig text of either kind) over msg against the
// pinned keys, including the trusted comment.
func (kr Keyring) Verify(msg, sig []byte) (SigInfo, error) {
	s, k, err := kr.parseSig(sig)
	if err != nil {
		return SigInfo{}, err
	}
	if !minisign.Verify(k.k, msg, sig) {
		return SigInfo{}, ErrBadSignature
	}
	return SigInfo{KeyID: k.ID(), Algorithm: Algorithm(s.Algorithm), TrustedComment: s.TrustedComment}, nil
}

// VerifyReader checks sig over everything in r. A prehashed signature is
// verified while streaming; a legacy one reads r into memory (at most
// maxLegacy bytes, else it is refused).
func (kr Keyring) VerifyReader(r io.Reader, sig []byte, maxLegacy int64) (SigInfo, error) {
	s, k, err := kr.parseSig(sig)
	if err != nil {
		return SigInfo{}, err
	}
	info := SigInfo{KeyID: k.ID(), Algorithm: Algorithm(s.Algorithm), TrustedComment: s.TrustedComment}
	if s.Algorithm == minisign.EdDSA {
		msg, err := io.ReadAll(io.LimitReader(r, maxLegacy+1))
		if err != nil {
			return SigInfo{}, fmt.Errorf("ota: verify: read: %w", err)
		}
		if int64(len(msg)) > maxLegacy {
			return SigInfo{}, fmt.Errorf("%w: legacy (Ed) signature over more than %d bytes; sign with the prehashed default", ErrBadSignature, maxLegacy)
		}
		if !minisign.Verify(k.k, msg, sig) {
			return SigInfo{}, ErrBadSignature
		}
		return info, nil
	}
	mr := minisign.NewReader(r)
	if _, err := io.Copy(io.Discard, mr); err != nil {
		return SigInfo{}, fmt.Errorf("ota: verify: read: %w", err)
	}
	if !mr.Verify(k.k, sig) {
		return SigInfo{}, ErrBadSignature
	}
	return info, nil
}
