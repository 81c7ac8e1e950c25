"""cnnzoo.net: free loopback ports, a preferred one where it is free."""
import socket

from cnnzoo.net import free_port, free_ports


def test_free_ports_are_distinct_and_bindable():
    ports = free_ports(3)
    assert len(set(ports)) == 3
    for port in ports:
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))
    assert free_port() > 0


def test_a_preferred_port_is_taken_when_free_and_replaced_when_not():
    wanted = free_port()
    assert free_ports(2, preferred=(wanted, 0))[0] == wanted
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", wanted))
        busy.listen()
        got = free_ports(2, preferred=(wanted,))
    assert wanted not in got and len(set(got)) == 2
