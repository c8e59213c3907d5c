/*
 * console_uart_stm32f4.c - console on USART2 (PA2 TX, 115200 8N1), which the
 * NUCLEO-F411RE routes to the ST-LINK virtual COM port. The clock is the reset
 * default (HSI, 16 MHz), so nothing else needs setting up.
 *
 * Part of the mnist-edge firmware; generated, do not edit.
 */
#include "console.h"
#include "console_uart.h"

#define REG(addr) (*(volatile uint32_t *)(addr))

#define RCC_AHB1ENR REG(0x40023830u)
#define RCC_APB1ENR REG(0x40023840u)
#define GPIOA_MODER REG(0x40020000u)
#define GPIOA_AFRL REG(0x40020020u)
#define USART2_SR REG(0x40004400u)
#define USART2_DR REG(0x40004404u)
#define USART2_BRR REG(0x40004408u)
#define USART2_CR1 REG(0x4000440cu)

#define USART_SR_TXE (1u << 7)
#define USART_SR_TC (1u << 6)

void console_init(void)
{
    RCC_AHB1ENR |= 1u << 0;  /* GPIOA */
    RCC_APB1ENR |= 1u << 17; /* USART2 */
    GPIOA_MODER = (GPIOA_MODER & ~(3u << 4)) | (2u << 4); /* PA2: alternate function */
    GPIOA_AFRL = (GPIOA_AFRL & ~(15u << 8)) | (7u << 8);  /* AF7: USART2_TX */
    USART2_BRR = (8u << 4) | 11u; /* 16 MHz / (16 * 8.6875) = 115107 baud (-0.08 %) */
    USART2_CR1 = (1u << 13) | (1u << 3); /* UE, TE */
}

void uart_put_char(char c)
{
    while ((USART2_SR & USART_SR_TXE) == 0u) {
    }
    USART2_DR = (uint32_t)(uint8_t)c;
}

void console_halt(int ok)
{
    (void)ok;
    while ((USART2_SR & USART_SR_TC) == 0u) {
    }
    for (;;) {
        __asm__ volatile("wfi");
    }
}
