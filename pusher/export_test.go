package pusher

// Exited is closed when the webhook sender has returned (after the hub
// stopped).
func (w *Webhooks) Exited() <-chan struct{} { return w.exited }
