//! RDP orders.

/// dp_accounting 0.6's `DEFAULT_RDP_ORDERS`: 1.1, 1.2, …, 10.9 (step 0.1), 11, 12, …, 63,
/// 128, 256, 512, 1024.
pub fn default_orders() -> Vec<f64> {
    let mut orders: Vec<f64> = (1..100).map(|x| 1.0 + f64::from(x) / 10.0).collect();
    orders.extend((11..64).map(f64::from));
    orders.extend([128.0, 256.0, 512.0, 1024.0]);
    orders
}

#[cfg(test)]
mod tests {
    #[test]
    fn default_orders_match_dp_accounting() {
        let orders = super::default_orders();
        assert_eq!(orders.len(), 99 + 53 + 4);
        assert_eq!(orders[0], 1.1);
        assert_eq!(orders[98], 10.9);
        assert_eq!(orders[99], 11.0);
        assert_eq!(*orders.last().unwrap(), 1024.0);
        // 1 + x/10 is what dp_accounting computes, so fractional orders are bit-identical.
        assert_eq!(orders[2], 1.0 + 3.0 / 10.0);
    }
}
