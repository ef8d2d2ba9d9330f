package events

// Byte-loop checks of the names every event carries. They run twice per
// event hop (validated when built and again when decoded): a regular
// expression costs a machine from a pool that every GC empties, several
// times the loop's cost on the hop's critical path.

// Kubernetes accepts DNS-1123 subdomains as object names; namespaces and
// cluster names are the stricter label form.

// isDNSLabel reports whether s is a DNS-1123 label: 1-63 lower-case letters,
// digits or '-', starting and ending with a letter or digit.
func isDNSLabel(s string) bool { return len(s) <= 63 && labelChars(s) }

// isDNSSubdomain reports whether s is a DNS-1123 subdomain: dot-separated
// labels (as the Kubernetes pattern has it, without their 63-byte limit),
// at most 253 bytes in all.
func isDNSSubdomain(s string) bool {
	if len(s) > 253 {
		return false
	}
	start := 0
	for i := 0; i <= len(s); i++ {
		if i == len(s) || s[i] == '.' {
			if !labelChars(s[start:i]) {
				return false
			}
			start = i + 1
		}
	}
	return true
}

// labelChars reports whether s is non-empty lower-case letters, digits and
// '-', starting and ending with a letter or digit.
func labelChars(s string) bool {
	if len(s) == 0 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9':
		case c == '-' && i > 0 && i < len(s)-1:
		default:
			return false
		}
	}
	return true
}

// isBackupID reports whether s is 1-128 letters, digits, '-' or '_',
// starting with a letter or digit.
func isBackupID(s string) bool {
	if len(s) == 0 || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case (c == '-' || c == '_') && i > 0:
		default:
			return false
		}
	}
	return true
}
