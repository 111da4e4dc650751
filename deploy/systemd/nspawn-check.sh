#!/bin/bash
# Inside the container booted by run-under-nspawn.sh (as governor-check.service): exercise
# governor.service under the container's systemd and log what happened to /results/check.log.
exec >/results/check.log 2>&1
url="http://127.0.0.1:${GOV_PORT}"
show() {
    systemctl show governor -p ActiveState -p SubState -p Result -p NRestarts -p ExecMainStatus \
        -p StatusText -p MainPID | tr '\n' ' '
    echo
}
wait_active() {
    for _ in $(seq 90); do
        [ "$(systemctl is-active governor)" = active ] && return 0
        sleep 1
    done
    return 1
}
get() { python3 -c "import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1], timeout=5).status)" "$1" 2>&1 | tail -1; }
prop() { systemctl show governor -p "$1" --value; }

echo "== systemd: $(systemctl --version | head -1)"
echo "== 1. start: Type=notify, active only after READY=1 (first tick)"
if wait_active; then echo "active: yes"; else echo "active: NO"; fi
show
echo "readyz: $(get "$url/readyz")  healthz: $(get "$url/healthz")"
pid=$(prop MainPID)
echo "process: $(tr '\0' ' ' </proc/"$pid"/cmdline)"
grep -E '^(Uid|Gid|CapEff|CapBnd|NoNewPrivs|Seccomp):' /proc/"$pid"/status | tr -s '\t' ' '
echo "state dir: $(ls -ld /var/lib/private/governor 2>&1) / $(ls /var/lib/private/governor 2>&1 | tr '\n' ' ')"
echo "token readable by the service user outside its credentials: $(setpriv --reuid="$(awk '/^Uid/{print $2}' /proc/"$pid"/status)" --clear-groups cat /etc/governor/hf_token >/dev/null 2>&1 && echo yes || echo no)"
echo "ticks: $(python3 -c "import urllib.request; t=urllib.request.urlopen('$url/metrics').read().decode(); print([l for l in t.splitlines() if l.startswith('governor_ticks_total')])")"
echo "== systemd-analyze security (the loaded unit)"
systemd-analyze security governor --no-pager | tail -1

echo "== 2. watchdog: a hung process is killed and restarted (drop-in WatchdogSec=10s for the test)"
mkdir -p /run/systemd/system/governor.service.d
printf '[Service]\nWatchdogSec=10s\n' >/run/systemd/system/governor.service.d/test-watchdog.conf
systemctl daemon-reload
systemctl restart governor && wait_active
show
pid=$(prop MainPID)
n0=$(prop NRestarts)
kill -STOP "$pid"
echo "SIGSTOP to $pid (NRestarts=$n0)"
for _ in $(seq 60); do
    [ "$(prop NRestarts)" != "$n0" ] && [ "$(systemctl is-active governor)" = active ] && break
    sleep 1
done
show
echo "new MainPID differs: $([ "$(prop MainPID)" != "$pid" ] && echo yes || echo no)"
journalctl -u governor --no-pager -o cat | grep -iE 'watchdog' | tail -3
rm -f /run/systemd/system/governor.service.d/test-watchdog.conf
systemctl daemon-reload

echo "== 3. configuration error: exit 2, not restarted (RestartPreventExitStatus=2)"
cp /etc/governor/governor.yaml /tmp/good.yaml
sed -i 's/tick_interval_s: 2/tick_interval_s: -1/' /etc/governor/governor.yaml
systemctl reset-failed governor
n0=$(prop NRestarts)
systemctl restart governor || echo "systemctl restart: failed (expected)"
sleep 25   # RestartSec=10s: two restart periods
show
echo "restarted after the config error: $([ "$(prop NRestarts)" != "$n0" ] && echo yes || echo no)"
journalctl -u governor --no-pager -o cat | grep -E 'configuration error' | tail -1

echo "== 4. fixed config, start again, clean stop on SIGTERM"
cp /tmp/good.yaml /etc/governor/governor.yaml
systemctl reset-failed governor
systemctl start governor && wait_active
show
systemctl stop governor
show
journalctl -u governor --no-pager -o cat | tail -3
echo "CHECKS DONE"
