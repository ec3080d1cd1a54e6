"""Messages of the virt layer reach a zh-Hans reader translated (webkvm.i18n.said), with their parameters
filled in; libvirt's own words stay as libvirt said them; str() stays the English sentence."""

# ruff: noqa: RUF001  (the expected Chinese uses full-width punctuation)
from __future__ import annotations

import libvirt
import pytest
from django.utils import translation

from virt import nics, storage_rules
from virt.errors import (
    BadValue,
    InvalidState,
    Message,
    Text,
    Unreachable,
    brief_message,
    explain_connect_failure,
    gettext_noop,
    host_message,
    host_words,
    reworded,
    translate,
)
from virt.storage_rules import Problem, StorageInputError
from webkvm.i18n import said, said_dict


def _libvirt_error() -> libvirt.libvirtError:
    conn = libvirt.open("test:///default")
    try:
        conn.lookupByName("no-such-vm")
    except libvirt.libvirtError as exc:
        return exc
    finally:
        conn.close()
    raise AssertionError("the test driver found a VM named no-such-vm")


def test_a_virt_error_is_said_in_chinese_with_its_parameters() -> None:
    error = InvalidState(gettext_noop("{name} is not running: start it to use its serial console."), name="web-01")
    assert str(error) == "web-01 is not running: start it to use its serial console."
    with translation.override("zh-hans"):
        assert said(error) == "web-01 未运行：请先启动它才能使用串口控制台。"
    assert said(error) == str(error)  # English where English is asked for


def test_a_bad_value_is_a_value_error_said_in_chinese() -> None:
    with pytest.raises(ValueError) as caught:
        nics.normalise_mac("01:00:5e:00:00:01")
    assert isinstance(caught.value, BadValue)
    assert str(caught.value) == "This is a multicast address: the first byte of a NIC's MAC must be even."
    with pytest.raises(BadValue) as named:
        storage_rules.check_name("", "volume name")
    assert str(named.value) == "Give a volume name."
    with translation.override("zh-hans"):
        assert said(caught.value) == "这是组播地址：网卡 MAC 的第一个字节必须是偶数。"
        assert said(named.value) == "请输入卷名称。"  # a word of ours as a parameter is translated with it


def test_a_problem_of_a_form_stays_a_string_and_is_said_in_chinese() -> None:
    with pytest.raises(BadValue) as caught:
        storage_rules.parse_size("10")  # no unit
    problem = Problem.of("size", caught.value)
    assert problem.message == "Give a size with its unit, such as 10G, 512M or 1.5 TiB."
    error = StorageInputError([problem])
    assert str(error) == "size: Give a size with its unit, such as 10G, 512M or 1.5 TiB."
    with translation.override("zh-hans"):
        assert said(problem.message) == "请输入带单位的大小，例如 10G、512M 或 1.5 TiB。"
        assert said(error) == "size：请输入带单位的大小，例如 10G、512M 或 1.5 TiB。"


def test_libvirt_words_stay_as_libvirt_said_them() -> None:
    exc = _libvirt_error()
    error = translate(exc)
    assert error.from_host
    words = str(error)  # the test driver's "Domain not found"
    assert words == exc.get_error_message()
    longer = reworded(error, gettext_noop("The clone failed: {error}"), error=error)
    assert longer.from_host and type(longer) is type(error)
    with translation.override("zh-hans"):
        assert said(error) == words
        assert said(longer) == f"克隆失败：{words}"
    assert str(longer) == f"The clone failed: {words}"


def test_connection_advice_is_ours_and_an_unknown_failure_is_the_hosts() -> None:
    advice = explain_connect_failure("ssh: connect to host x port 22: Connection refused")
    assert advice == "connection refused: libvirtd is not listening there."
    odd = explain_connect_failure("some {odd} failure of the host")
    assert odd == "some {odd} failure of the host"
    with translation.override("zh-hans"):
        assert said(advice) == "连接被拒绝：libvirtd 未在该地址监听。"
        assert said(odd) == "some {odd} failure of the host"


def test_a_hosts_trouble_as_words_and_as_a_message_for_the_channel_layer() -> None:
    error = Unreachable(gettext_noop("no answer within {seconds} s"), seconds="5")
    words = host_words(error)
    assert isinstance(words, Text) and words == "unreachable: no answer within 5 s"
    message = host_message(error)
    assert str(message) == "unreachable: no answer within 5 s"
    sent = message.as_dict()
    assert Message.from_dict(sent) == message
    with translation.override("zh-hans"):
        assert said(words) == "无法连接：5 秒内无响应"
        assert said_dict(sent) == "无法连接：5 秒内无响应"
        assert said(brief_message("busy: 3 calls queued")) == "宿主机繁忙"
