#!/bin/bash
# ifupdown against eniroute: doctor, and the matrix's actions without and with the shipped
# if-up.d hook.
. /eniroute-probe/lib.sh
systemctl disable systemd-networkd.service systemd-networkd.socket >/dev/null 2>&1
# The container's first boot enabled every unit by Debian's presets; this image family runs
# only its own manager (doctor rightly reports an enabled manager).
systemctl disable NetworkManager.service >/dev/null 2>&1
mkdir -p /etc/eniroute /etc/network/if-up.d /etc/network/if-down.d /etc/network/if-pre-up.d /etc/network/if-post-down.d /run/network
cp /eniroute-probe/eniroute.toml /etc/eniroute/eniroute.toml
printf 'auto lo\niface lo inet loopback\n\n' > /etc/network/interfaces
for n in 1 2; do
  printf 'auto eni%s\niface eni%s inet static\n  address 192.168.7%s.21/24\n\n' $n $n $((6 + n)) >> /etc/network/interfaces
done
make_enis
systemctl start networking || fail "start networking: $(journalctl -o cat -u networking | tail -5 | tr '\n' ' ')"
ip -4 addr show dev eni1 | grep -q 192.168.77.21/ || fail "ifupdown did not configure eni1: $(ip -br addr | tr '\n' ' ')"
apply_ok ifupdown
doctor_is 1 "ifupdown configures the ENIs, no hook" ifupdown-manages-eni no-watch

actions() {
  measure ifupdown "$1" "ifdown eni1; ifup eni1" sh -c 'ifdown eni1 && ifup eni1'
  apply_ok "after ifdown/ifup ($1)"
  measure ifupdown "$1" "systemctl restart networking" systemctl restart networking
  apply_ok "after restart networking ($1)"
}
actions "no hook"
sed 's|^ENIROUTE=/usr/bin/eniroute|ENIROUTE=/eniroute-real|' /eniroute-probe/eniroute-ifup > /etc/network/if-up.d/eniroute
chmod 755 /etc/network/if-up.d/eniroute
doctor_is 1 "ifupdown, if-up.d hook" ifupdown-manages-eni
doctor_lacks "if-up.d hook" no-watch
actions "if-up.d hook"
journalctl --no-pager -o cat -u networking > /out/journal.txt 2>&1
