package redislimit

import "time"

// SetMaxRenewal shortens how long l renews a lease (for tests).
func SetMaxRenewal(l *Limiter, d time.Duration) { l.maxRenewal = d }
