#!/bin/bash
# NetworkManager against eniroute: doctor, the matrix's actions without and with the shipped
# dispatcher hook, and an ENI made unmanaged.
. /eniroute-probe/lib.sh
systemctl start dbus.socket dbus.service || fail "start dbus"
# A NetworkManager image does not run systemd-networkd (the container's first boot enabled it
# by Debian's preset; doctor rightly reports an enabled networkd with its defaults).
systemctl disable systemd-networkd.service systemd-networkd.socket >/dev/null 2>&1
mkdir -p /etc/eniroute /etc/NetworkManager/conf.d /etc/NetworkManager/system-connections /etc/NetworkManager/dispatcher.d
cp /eniroute-probe/eniroute.toml /etc/eniroute/eniroute.toml
# no DHCP profiles of NetworkManager's own on the veths (there is no DHCP server here)
printf '[main]\nno-auto-default=*\n' > /etc/NetworkManager/conf.d/00-test.conf
for n in 1 2; do
  f=/etc/NetworkManager/system-connections/eni$n.nmconnection
  printf '[connection]\nid=eni%s\ntype=ethernet\ninterface-name=eni%s\n[ipv4]\nmethod=manual\naddress1=192.168.7%s.21/24\n[ipv6]\nmethod=ignore\n' \
    $n $n $((6 + n)) > $f
  chmod 600 $f
done
make_enis
systemctl start NetworkManager || fail "start NetworkManager"
configured() {
  for i in $(seq 100); do
    ip -4 addr show dev eni1 | grep -q 192.168.77.21/ && ip -4 addr show dev eni2 | grep -q 192.168.78.21/ && return 0
    sleep 0.1
  done
  fail "NetworkManager did not configure the ENIs: $(ip -br addr) $(nmcli -t device 2>&1 | tr '\n' ' ')"
}
configured
nmcli -t device > /out/nm-devices.txt 2>&1
apply_ok "NetworkManager"
doctor_is 1 "NetworkManager manages the ENIs, no watch" networkmanager-manages-eni no-watch

actions() {
  measure NetworkManager "$1" "nmcli connection up eni1" nmcli -w 10 connection up eni1
  apply_ok "after connection up ($1)"
  measure NetworkManager "$1" "nmcli device reapply eni1" nmcli device reapply eni1
  apply_ok "after device reapply ($1)"
  measure NetworkManager "$1" "nmcli networking off; nmcli networking on" sh -c 'nmcli networking off && nmcli networking on'
  configured
  apply_ok "after networking off/on ($1)"
}
# 1. without a hook
actions "no hook"
# 2. with the shipped dispatcher hook (the binary's path is the only change)
sed 's|^ENIROUTE=/usr/bin/eniroute|ENIROUTE=/eniroute-real|' /eniroute-probe/90-eniroute > /etc/NetworkManager/dispatcher.d/90-eniroute
chmod 755 /etc/NetworkManager/dispatcher.d/90-eniroute
doctor_is 1 "NetworkManager manages the ENIs, dispatcher hook" networkmanager-manages-eni
doctor_lacks "dispatcher hook" no-watch
actions "dispatcher hook"
# 3. the ENIs unmanaged: doctor is clean
printf '[keyfile]\nunmanaged-devices=interface-name:eni1;interface-name:eni2\n' > /etc/NetworkManager/conf.d/eniroute.conf
nmcli general reload conf; sleep 1
nmcli -t device >> /out/nm-devices.txt 2>&1
apply_ok "ENIs unmanaged"
doctor_is 0 "ENIs unmanaged by NetworkManager"
journalctl --no-pager -o cat -u NetworkManager -u NetworkManager-dispatcher > /out/journal.txt 2>&1
