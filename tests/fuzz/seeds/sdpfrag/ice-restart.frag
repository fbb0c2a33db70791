a=ice-options:trickle ice2
a=group:BUNDLE 0 1
m=audio 9 UDP/TLS/RTP/SAVPF 111
a=mid:0
a=ice-ufrag:ZZy2
a=ice-pwd:4vnxaiHGL5qY0yNmNMB1hRhi
