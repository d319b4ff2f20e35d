package main

// demoProducts is the demo catalog seeded on first start, as services/catalog/demo.py seeds it;
// sku-limited-edition has a single unit, so a second order for it shows out-of-stock.
var demoProducts = []Product{
	{"sku-espresso", "Espresso Beans", "Dark roast whole beans, 1 kg bag.", 2400, 100},
	{"sku-filter-papers", "Paper Filters", "Pack of 100 unbleached cone filters.", 600, 100},
	{"sku-french-press", "French Press", "Glass and steel press for four cups.", 3500, 100},
	{"sku-grinder", "Burr Grinder", "Conical burr grinder with 40 settings.", 8900, 100},
	{"sku-limited-edition", "Limited Edition Kettle", "Hand-made copper pour-over kettle; only one left.", 15000, 1},
	{"sku-mug", "Stoneware Mug", "Glazed 350 ml mug.", 1200, 100},
}
