a=ice-ufrag:EsAw
a=ice-pwd:P2uYro0UCOQ4zxjKXaWCBui1
m=audio 9 UDP/TLS/RTP/SAVPF 111
a=mid:0
a=end-of-candidates
