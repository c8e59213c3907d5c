/*
 * console_uart_nrf52.c - console on UART0 (TX on P0.06, 115200 8N1), which the
 * nRF52840-DK routes to the J-Link virtual COM port.
 *
 * Part of the mnist-edge firmware; generated, do not edit.
 */
#include "console.h"
#include "console_uart.h"

#define REG(addr) (*(volatile uint32_t *)(addr))

#define UART0_TASKS_STARTTX REG(0x40002008u)
#define UART0_TASKS_STOPTX REG(0x4000200cu)
#define UART0_EVENTS_TXDRDY REG(0x4000211cu)
#define UART0_ENABLE REG(0x40002500u)
#define UART0_PSEL_TXD REG(0x4000250cu)
#define UART0_TXD REG(0x4000251cu)
#define UART0_BAUDRATE REG(0x40002524u)
#define P0_OUTSET REG(0x50000508u)
#define P0_DIRSET REG(0x50000518u)

#define TX_PIN 6u

void console_init(void)
{
    P0_OUTSET = 1u << TX_PIN; /* idle high, also while the UART is off */
    P0_DIRSET = 1u << TX_PIN;
    UART0_PSEL_TXD = TX_PIN;
    UART0_BAUDRATE = 0x01D7E000u; /* 115200 */
    UART0_ENABLE = 4u;
    UART0_TASKS_STARTTX = 1u;
}

void uart_put_char(char c)
{
    UART0_EVENTS_TXDRDY = 0u;
    UART0_TXD = (uint32_t)(uint8_t)c;
    while (UART0_EVENTS_TXDRDY == 0u) {
    }
}

void console_halt(int ok)
{
    (void)ok;
    UART0_TASKS_STOPTX = 1u;
    for (;;) {
        __asm__ volatile("wfi");
    }
}
