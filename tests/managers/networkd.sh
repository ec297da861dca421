#!/bin/bash
# systemd-networkd against eniroute: doctor before/after the shipped drop-in, and the matrix's
# actions with networkd's defaults, with the drop-in, and with KeepConfiguration=static.
. /eniroute-probe/lib.sh
systemctl start dbus.socket dbus.service || fail "start dbus"
# The container's first boot enabled every unit by Debian's presets; this image family runs
# only its own manager (doctor rightly reports an enabled manager).
systemctl disable NetworkManager.service >/dev/null 2>&1
mkdir -p /etc/eniroute /etc/systemd/network /etc/systemd/networkd.conf.d
cp /eniroute-probe/eniroute.toml /etc/eniroute/eniroute.toml
make_enis
systemctl start systemd-networkd || fail "start networkd"
sleep 0.5

# doctor: networkd's default is reported; the shipped drop-in makes the host clean
doctor_is 1 "networkd defaults" networkd-foreign
cp /eniroute-probe/80-eniroute.conf /etc/systemd/networkd.conf.d/80-eniroute.conf
systemctl restart systemd-networkd
doctor_is 0 "networkd with the drop-in, no .network on the ENIs"

network_files() {
  for n in 1 2; do
    printf '[Match]\nMACAddress=00:16:3e:7e:00:0%s\n[Network]\nAddress=192.168.7%s.21/24\n' $n $((6 + n)) \
      > /etc/systemd/network/10-eni$n.network
  done
}
configured() {
  for i in 1 30 60 90 120 150; do
    ip -4 addr show dev eni1 | grep -q 192.168.77.21/ && ip -4 addr show dev eni2 | grep -q 192.168.78.21/ && return 0
    sleep 0.1
  done
  fail "networkd did not configure the ENIs: $(ip -br addr)"
}

# 1. networkd's defaults
rm /etc/systemd/networkd.conf.d/80-eniroute.conf
network_files
systemctl restart systemd-networkd; configured
apply_ok "networkd defaults"
# apply warns, once, about what will undo its work
$E apply --lock-timeout 5s >/dev/null 2>/tmp/apply.err
c=$(grep -cF '[networkd-foreign; see' /tmp/apply.err)
[ "$c" = 1 ] && ok "apply warns once about networkd-foreign" || fail "apply warned $c times: $(tr '\n' ' ' </tmp/apply.err)"
# doctor -o json: one object, the finding with its fix
$E -o json doctor > /tmp/doctor.json
python3 -c 'import json,sys; d=json.load(open("/tmp/doctor.json")); assert not d["clean"]; assert any(f["id"] == "networkd-foreign" and f["breaks_routing"] and f["fix"] and f["why"] for f in d["findings"]), d' \
  && ok "doctor -o json names networkd-foreign with its fix" || fail "doctor -o json: $(cat /tmp/doctor.json)"
measure networkd defaults "networkctl reconfigure eni1" networkctl reconfigure eni1
apply_ok "after reconfigure"
measure networkd defaults "networkctl reload" networkctl reload
apply_ok "after reload"
measure networkd defaults "networkctl forcerenew eni1" networkctl forcerenew eni1
apply_ok "after forcerenew"
measure networkd defaults "systemctl restart systemd-networkd" systemctl restart systemd-networkd
apply_ok "after restart"
measure networkd defaults "networkctl down eni1 && networkctl up eni1" sh -c "networkctl down eni1 && networkctl up eni1"

# 2. with the shipped drop-in
cp /eniroute-probe/80-eniroute.conf /etc/systemd/networkd.conf.d/80-eniroute.conf
systemctl restart systemd-networkd; configured
apply_ok "networkd + drop-in"
doctor_is 1 "drop-in, .network on the ENIs, no watch" networkd-manages-eni no-watch
for action in "networkctl reconfigure eni1" "networkctl reload" "networkctl forcerenew eni1" "systemctl restart systemd-networkd" "networkctl down eni1 && networkctl up eni1"; do
  measure networkd drop-in "$action" sh -c "$action"
  apply_ok "after $action"
done

# 3. drop-in + KeepConfiguration=static on the ENIs
for n in 1 2; do
  mkdir -p /etc/systemd/network/10-eni$n.network.d
  printf '[Network]\nKeepConfiguration=static\n' > /etc/systemd/network/10-eni$n.network.d/keep.conf
done
networkctl reload; sleep 0.5; configured
apply_ok "drop-in + KeepConfiguration=static"
doctor_is 1 "KeepConfiguration=static" networkd-manages-eni
doctor_lacks "KeepConfiguration=static" no-watch
measure networkd "drop-in + KeepConfiguration=static" "networkctl reconfigure eni1" networkctl reconfigure eni1
journalctl --no-pager -o cat -u systemd-networkd > /out/journal.txt 2>&1
# networkd has nothing to say about the shipped drop-in (an unknown key or a bad value would
# be logged with the file's name)
grep -F 80-eniroute.conf /out/journal.txt && fail "networkd complains about the drop-in" || ok "networkd accepts the drop-in silently"
