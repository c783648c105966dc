package ws

// WaitCounted is waitCounted, for the tests of package ws_test that must
// start a failure only once a broker knows how many brokers there are.
var WaitCounted = waitCounted

// VerifyNoLeaks is verifyNoLeaks, for the tests of package ws_test.
var VerifyNoLeaks = verifyNoLeaks
